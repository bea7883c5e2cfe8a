"""BM25 over chunks, with English stemming and stopwords (bm25s + PyStemmer).

>>> index = BM25Index.build(["the cat sat on the mat", "dogs chase cats", "stock markets fell"])
>>> scores = index.scores("cat")
>>> int(scores.argmax()), bool(scores[2] == 0)
(0, True)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

__all__ = ["BM25Index"]

_stemmer = Stemmer.Stemmer("english")
_SPLIT = re.compile(r"(?u)\b\w\w+\b")  # bm25s' default splitter, so both sides agree
_STOPWORDS = frozenset(STOPWORDS_EN)


def _tokenizer() -> bm25s.tokenization.Tokenizer:
    return bm25s.tokenization.Tokenizer(stopwords="en", stemmer=_stemmer.stemWord)


class BM25Index:
    """Okapi BM25 (Lucene variant, k1=1.5, b=0.75 by default) over a fixed list of texts."""

    def __init__(self, model: bm25s.BM25, tokenizer: bm25s.tokenization.Tokenizer, size: int):
        self.model = model
        self.tokenizer = tokenizer
        self.size = size

    @classmethod
    def build(cls, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> BM25Index:
        tokenizer = _tokenizer()
        tokens = tokenizer.tokenize(
            list(texts), update_vocab=True, return_as="tuple", show_progress=False
        )
        model = bm25s.BM25(k1=k1, b=b)
        if texts:
            model.index(tokens, show_progress=False)
        return cls(model, tokenizer, len(texts))

    def query_terms(self, query: str) -> list[str]:
        """The stemmed, stopword-free terms of a query that the index knows.

        >>> BM25Index.build(["cats sat"]).query_terms("The cats are sitting")
        ['cat']
        """
        words = _SPLIT.findall(query.lower())
        stems = _stemmer.stemWords([w for w in words if w not in _STOPWORDS])
        known = self.model.vocab_dict
        return [stem for stem in stems if stem in known]

    def scores(
        self, query: str, mask: npt.NDArray[np.bool_] | None = None
    ) -> npt.NDArray[np.float32]:
        """BM25 score of every text for ``query`` (0 where no term matches or masked out)."""
        if self.size == 0:
            return np.zeros(0, dtype=np.float32)
        terms = self.query_terms(query)
        if not terms:
            return np.zeros(self.size, dtype=np.float32)
        weights = None if mask is None else mask.astype(np.float32)
        return np.asarray(self.model.get_scores(terms, weight_mask=weights), dtype=np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(str(directory / "bm25"), show_progress=False)
        (directory / "bm25-size.json").write_text(json.dumps({"size": self.size}))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        size = json.loads((directory / "bm25-size.json").read_text())["size"]
        return cls(bm25s.BM25.load(str(directory / "bm25")), _tokenizer(), int(size))
