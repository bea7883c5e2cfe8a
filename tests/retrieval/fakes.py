"""A hashed bag-of-words embedder: deterministic and instant, for tests of our own logic
(ingest, store, fusion). Retrieval quality is measured with the real MiniLM elsewhere."""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


class HashEmbedder:
    name = "hash-test"
    dimension = 64

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    def _one(self, text: str) -> npt.NDArray[np.float32]:
        vector = np.zeros(self.dimension, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % self.dimension] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        time.sleep(self.delay)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._one(t) for t in texts])

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return self._one(text)
