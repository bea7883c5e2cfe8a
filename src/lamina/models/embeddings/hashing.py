"""A hashed bag-of-words embedder: deterministic, instant and dependency-free, for tests.

Each word (a run of letters, digits or ``_``, lower-cased) adds one to the axis its CRC-32
picks; rows are scaled to unit length. Texts that share words are close, so ingest, search,
fusion, routing and reranking can be tested in milliseconds with predictable results:

>>> embedder = HashEmbedder()
>>> round(float(embedder.embed_query("cats purr") @ embedder.embed_query("Cats PURR!")), 6)
1.0
>>> embedder.count_tokens("Don't panic."), embedder.embed_documents([]).shape
(3, (0, 64))

It knows nothing of meaning: measure retrieval quality with a real model (``minilm``).
Registered as the embedder backend ``hash`` (spec ``hash`` or ``hash:DIMENSION``), as
:class:`~lamina.models.scripted.ScriptedModel` is the chat model ``scripted``.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Sequence
from typing import Self

import numpy as np

from lamina.errors import ConfigError
from lamina.models.embeddings.base import Vectors
from lamina.settings import Settings

__all__ = ["HashEmbedder"]

_WORD = re.compile(r"\w+")


class HashEmbedder:
    """See the module docstring. A token is a word; nothing is added around a text, and
    words past ``max_tokens`` are not read (as a real model truncates). A text without words
    embeds as the zero vector.

    ``delay`` seconds are slept in every ``embed_documents`` call, to stand in for a slow
    model in tests of concurrency; ``calls`` counts those calls.
    """

    backend = "hash"

    def __init__(self, delay: float = 0.0, *, dimension: int = 64, max_tokens: int = 512) -> None:
        if dimension < 1 or max_tokens < 1:
            raise ConfigError(
                f"A hash embedder needs a dimension and max_tokens of at least 1, got "
                f"dimension={dimension}, max_tokens={max_tokens}."
            )
        self.delay = delay
        self.calls = 0
        self._dimension = dimension
        self._max_tokens = max_tokens

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        """``hash`` (64 dimensions) or ``hash:DIMENSION``."""
        if not name:
            return cls()
        if not name.isdigit() or int(name) < 1:
            raise ConfigError(
                f"Unknown variant {name!r} in embedder spec 'hash:{name}': give the number of "
                f"dimensions, e.g. 'hash:128', or just 'hash' (64)."
            )
        return cls(dimension=int(name))

    @property
    def name(self) -> str:
        return "hash" if self._dimension == 64 else f"hash:{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text))

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return [self.count_tokens(text) for text in texts]

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a list of texts; use embed_query for one")
        self.calls += 1
        time.sleep(self.delay)
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return np.stack([self._one(text) for text in texts])

    def embed_query(self, text: str) -> Vectors:
        return self._one(text)

    def _one(self, text: str) -> Vectors:
        vector = np.zeros(self._dimension, dtype=np.float32)
        for word in _WORD.findall(text.lower())[: self._max_tokens]:
            vector[zlib.crc32(word.encode()) % self._dimension] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector
