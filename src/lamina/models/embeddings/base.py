"""The Embedder interface: texts in, unit-length float32 vectors out.

:class:`Embedder` is the whole interface every backend implements. Two narrow views of it exist
for callers that need only part, so a small test double (or the server's) fits them:
:class:`TextEmbedder` (the two embedding calls) and :class:`DocumentEmbedder` (name,
dimension, ``embed_documents``). Every :class:`Embedder` is both.

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

__all__ = ["DocumentEmbedder", "Embedder", "TextEmbedder", "Vectors", "normalize"]

#: A float32 array: (n, dimension) for documents, (dimension,) for a query.
Vectors = NDArray[np.float32]


@runtime_checkable
class TextEmbedder(Protocol):
    """Only the two embedding calls: for code that compares texts with one another (rerankers,
    routers, answer extraction and verification, the query side of search) and never records
    which model made the vectors."""

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """One unit-length row per text, in order; shape (0, dimension) for no texts."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """One unit-length vector of shape (dimension,)."""
        ...


@runtime_checkable
class DocumentEmbedder(Protocol):
    """What code that keeps or serves vectors needs: the model's name (recorded with the
    vectors, so they are never mixed with another model's), their dimension and
    ``embed_documents``. The ingest and the server's ``/v1/embeddings`` take this."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """One unit-length row per text, in order; shape (0, dimension) for no texts."""
        ...


@runtime_checkable
class Embedder(DocumentEmbedder, TextEmbedder, Protocol):
    """An embedding model: what every backend implements and an index is built with.

    ``max_tokens`` is the longest input the model reads, counted the way ``count_tokens``
    counts (special tokens included): a text with ``count_tokens(text) <= max_tokens`` is
    embedded whole, a longer one is truncated. Chunkers size chunks with these two.

    A backend may also offer ``count_tokens_batch(texts) -> list[int]`` (the same counts,
    many texts per call); chunking uses it when present, which is much faster for a
    tokenizer that batches (:class:`~lamina.retrieval.tokens.EmbedderCounter`).
    """

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...


def normalize(vectors: NDArray[Any], eps: float = 1e-12) -> Vectors:
    """Rows scaled to unit L2 length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, eps), dtype=np.float32)
