"""Okapi BM25 (Lucene's variant) that grows and shrinks without a rebuild.

Rows are texts, numbered in the order they were added. A batch of new rows becomes a
*segment* (an inverted list per term: rows and term frequencies); a deleted row is only
marked dead. Nothing about the corpus is baked into the postings: the document frequency of
a term (its live rows), the number of live rows and their average length are taken at query
time, so after any sequence of adds and deletes the scores are exactly those of an index built
from scratch over the live rows. Merging segments (:meth:`BM25.merged`) only saves time.

    score(q, d) = Σ_t∈q idf(t) · tf / (tf + k1 · (1 - b + b · |d| / avgdl))
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))

with k1 = 1.5 and b = 0.75, as bm25s's default ``lucene`` method computes it (the tests
compare the two). Terms are :func:`terms`: lower-cased runs of two or more word characters,
Lucene's 33 English stopwords removed, Snowball-stemmed (PyStemmer), which is also what the
PostgreSQL store indexes, so both rank alike.

>>> index = BM25.empty().add([terms("the cat sat on the mat"), terms("dogs chase cats"),
...                            terms("stock markets fell")])
>>> scores = index.scores(terms("cat"))
>>> int(scores.argmax()), bool(scores[2] == 0)
(0, True)
>>> float(index.delete([0]).scores(terms("cat"))[0])
0.0
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import Stemmer

__all__ = ["BM25", "STOPWORDS", "Segment", "terms"]

#: Lucene's English stop set (also bm25s's ``"en"``).
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "  # noqa: SIM905
    "then there these they this to was will with".split()
)
_SPLIT = re.compile(r"(?u)\b\w\w+\b")
#: A "word" this long is noise (base64, a run of digits); PostgreSQL refuses lexemes of 2 KB.
MAX_TERM_CHARS = 256
_stemmer = Stemmer.Stemmer("english")

Scores = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


def terms(text: str) -> list[str]:
    """The BM25 terms of ``text``, in order, repeats kept.

    >>> terms("The cats are sitting on 2 mats, cat-like!")
    ['cat', 'sit', 'mat', 'cat', 'like']
    """
    words = [
        w for w in _SPLIT.findall(text.lower()) if w not in STOPWORDS and len(w) <= MAX_TERM_CHARS
    ]
    return list(_stemmer.stemWords(words))


class Vocabulary:
    """Term -> id, append-only. Shared by every version of an index: an older version simply
    has no postings for ids it never saw."""

    def __init__(self, words: Iterable[str] = ()) -> None:
        self.ids: dict[str, int] = {}
        for word in words:
            self.ids.setdefault(word, len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def intern(self, words: Iterable[str]) -> list[int]:
        ids = self.ids
        return [ids.setdefault(w, len(ids)) for w in words]

    def words(self) -> list[str]:
        return list(self.ids)


@dataclass(frozen=True)
class Segment:
    """Postings of the rows ``first ..``: for term id ``t`` (< ``len(indptr) - 1``), rows
    ``rows[indptr[t]:indptr[t+1]]`` (ascending, global numbers) hold it ``tfs[...]`` times."""

    indptr: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]
    tfs: npt.NDArray[np.float32]

    @classmethod
    def build(cls, first: int, term_ids: Sequence[Sequence[int]], vocabulary: int) -> Segment:
        counts = np.fromiter((len(t) for t in term_ids), dtype=np.int64, count=len(term_ids))
        flat = np.fromiter((t for ids in term_ids for t in ids), dtype=np.int64)
        rows = np.repeat(np.arange(first, first + len(term_ids), dtype=np.int64), counts)
        # One entry per (term, row) with its count; sorted by term, then row.
        pairs, tf = np.unique(flat * (first + len(term_ids)) + rows, return_counts=True)
        span = first + len(term_ids)
        term_of, row_of = np.divmod(pairs, span) if span else (pairs, pairs)
        indptr = np.zeros(vocabulary + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=vocabulary), out=indptr[1:])
        return cls(indptr, row_of.astype(np.int64), tf.astype(np.float32))

    def postings(self, term: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if term + 1 >= len(self.indptr):
            return _NO_ROWS, _NO_TFS
        start, end = self.indptr[term], self.indptr[term + 1]
        return self.rows[start:end], self.tfs[start:end]


_NO_ROWS = np.zeros(0, dtype=np.int64)
_NO_TFS = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class BM25:
    """One version of the index: immutable, so readers never wait for a writer. ``add`` and
    ``delete`` return the next version and share everything they do not change."""

    vocabulary: Vocabulary
    segments: tuple[Segment, ...]
    lengths: npt.NDArray[np.float32]
    alive: Mask
    live: int
    total_length: float
    k1: float = 1.5
    b: float = 0.75

    @classmethod
    def empty(cls, *, k1: float = 1.5, b: float = 0.75) -> BM25:
        return cls(Vocabulary(), (), _NO_TFS, np.zeros(0, dtype=bool), 0, 0.0, k1, b)

    @classmethod
    def build(cls, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> BM25:
        return cls.empty(k1=k1, b=b).add([terms(t) for t in texts])

    @property
    def size(self) -> int:
        """Rows ever added (dead ones included): the length of :meth:`scores`."""
        return len(self.alive)

    def add(self, rows: Sequence[Sequence[str]]) -> BM25:
        """Append rows (each a list of terms); they get the next row numbers."""
        if not rows:
            return self
        ids = [self.vocabulary.intern(row) for row in rows]
        segment = Segment.build(self.size, ids, len(self.vocabulary))
        lengths = np.fromiter((len(r) for r in rows), dtype=np.float32, count=len(rows))
        return BM25(
            self.vocabulary,
            (*self.segments, segment),
            np.concatenate([self.lengths, lengths]),
            np.concatenate([self.alive, np.ones(len(rows), dtype=bool)]),
            self.live + len(rows),
            self.total_length + float(lengths.sum(dtype=np.float64)),
            self.k1,
            self.b,
        )

    def delete(self, rows: Iterable[int]) -> BM25:
        """Mark rows dead (unknown or already dead rows are ignored)."""
        wanted = np.fromiter(rows, dtype=np.int64)
        wanted = wanted[(wanted >= 0) & (wanted < self.size)]
        wanted = np.unique(wanted[self.alive[wanted]])
        if wanted.size == 0:
            return self
        alive = self.alive.copy()
        alive[wanted] = False
        return BM25(
            self.vocabulary,
            self.segments,
            self.lengths,
            alive,
            self.live - int(wanted.size),
            self.total_length - float(self.lengths[wanted].sum(dtype=np.float64)),
            self.k1,
            self.b,
        )

    def merged(self) -> BM25:
        """The same index with one segment (dead rows' postings dropped): faster to query."""
        if len(self.segments) <= 1 and self.live == self.size:
            return self
        entries = [self._entries(s) for s in self.segments]
        term_of = np.concatenate([e[0] for e in entries]) if entries else _NO_ROWS
        rows = np.concatenate([e[1] for e in entries]) if entries else _NO_ROWS
        tfs = np.concatenate([e[2] for e in entries]) if entries else _NO_TFS
        order = np.argsort(term_of, kind="stable")  # segments are in row order already
        indptr = np.zeros(len(self.vocabulary) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=len(self.vocabulary)), out=indptr[1:])
        segment = Segment(indptr, rows[order], tfs[order])
        return BM25(
            self.vocabulary,
            (segment,),
            self.lengths,
            self.alive,
            self.live,
            self.total_length,
            self.k1,
            self.b,
        )

    def _entries(
        self, segment: Segment
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        term_of = np.repeat(np.arange(len(segment.indptr) - 1), np.diff(segment.indptr))
        keep = self.alive[segment.rows]
        return term_of[keep], segment.rows[keep], segment.tfs[keep]

    def scores(self, query: Sequence[str], mask: Mask | None = None) -> Scores:
        """The score of every row for the query terms (a repeated term counts again); 0 for
        dead rows, rows outside ``mask`` and rows sharing no term with the query. Term
        statistics are over all live rows: a mask narrows the results, not the corpus."""
        out = np.zeros(self.size, dtype=np.float32)
        if self.live == 0:
            return out
        average = self.total_length / self.live
        for term, repeats in Counter(query).items():
            found = self.vocabulary.ids.get(term)
            if found is None:
                continue
            rows, tfs = self._postings(found)
            if rows.size == 0:
                continue
            df = rows.size
            idf = math.log(1.0 + (self.live - df + 0.5) / (df + 0.5))
            norm = self.k1 * (1.0 - self.b + self.b * self.lengths[rows] / average)
            out[rows] += (repeats * idf) * tfs / (tfs + norm)
        if mask is not None:
            out[~mask[: self.size]] = 0.0
        return out

    def _postings(self, term: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        found = [s.postings(term) for s in self.segments]
        rows = np.concatenate([r for r, _ in found]) if len(found) > 1 else found[0][0]
        tfs = np.concatenate([t for _, t in found]) if len(found) > 1 else found[0][1]
        if self.live != self.size:
            keep = self.alive[rows]
            rows, tfs = rows[keep], tfs[keep]
        return rows, tfs

    # -- persistence ----------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the index (merged) to ``directory``."""
        one = self.merged()
        directory.mkdir(parents=True, exist_ok=True)
        segment = one.segments[0] if one.segments else Segment.build(0, [], 0)
        np.savez(
            directory / "bm25.npz",
            indptr=segment.indptr,
            rows=segment.rows,
            tfs=segment.tfs,
            lengths=one.lengths,
            alive=one.alive,
        )
        meta = {"k1": one.k1, "b": one.b, "vocabulary": one.vocabulary.words()}
        (directory / "bm25.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> BM25:
        meta = json.loads((directory / "bm25.json").read_text())
        with np.load(directory / "bm25.npz") as arrays:
            segment = Segment(arrays["indptr"], arrays["rows"], arrays["tfs"])
            lengths, alive = arrays["lengths"], arrays["alive"]
        return cls(
            Vocabulary(meta["vocabulary"]),
            (segment,),
            lengths,
            alive,
            int(alive.sum()),
            float(lengths[alive].sum(dtype=np.float64)),
            float(meta["k1"]),
            float(meta["b"]),
        )
