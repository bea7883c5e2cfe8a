"""The Embedder interface: texts in, unit-length float32 vectors out.

Every backend returns L2-normalised rows, so a dot product is the cosine similarity:

    >>> import numpy as np
    >>> normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

__all__ = ["Embedder", "Vectors", "normalize"]

#: A float32 array: (n, dimension) for documents, (dimension,) for a query.
Vectors = NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What retrieval needs from an embedding model.

    ``max_tokens`` is the longest input the model reads, counted the way ``count_tokens``
    counts (special tokens included): a text with ``count_tokens(text) <= max_tokens`` is
    embedded whole, a longer one is truncated. Chunkers size chunks with these two.
    """

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """One unit-length row per text, in order; shape (0, dimension) for no texts."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """One unit-length vector of shape (dimension,)."""
        ...


def normalize(vectors: NDArray[Any], eps: float = 1e-12) -> Vectors:
    """Rows scaled to unit L2 length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, eps), dtype=np.float32)
