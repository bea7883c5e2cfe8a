"""Search over a store: its dense and sparse candidates, fused; MMR and reranking on top.

The store does the first stage where its data lives (:meth:`~lamina.retrieval.store.base.
Store.search_dense` and :meth:`~lamina.retrieval.store.base.Store.search_sparse`, filters
pushed down): SQLite on the local indexes it keeps current, PostgreSQL in the database. The
:class:`Searcher` holds nothing about the corpus; it asks for ``candidates`` of each kind
inside one :meth:`~lamina.retrieval.store.base.Store.reading` block (so both lists come from
one moment of the store, even during an ingest), fuses them, and fetches the winners.

Hybrid fusion is a convex combination of min-max normalised scores over the union of both
candidate lists (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval", 2023,
found it beats reciprocal-rank fusion and is robust to its weight): ``score = α·dense +
(1-α)·bm25`` with α = 0.5 by default. RRF is available as ``fusion="rrf"``.

>>> convex_fusion({1: 2.0, 2: 1.5, 4: 1.0}, {2: 0.9, 3: 0.1}, alpha=0.5)
{2: 0.75, 1: 0.5, 4: 0.0, 3: 0.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from lamina.errors import InvalidRequestError
from lamina.models.embeddings.base import TextEmbedder
from lamina.retrieval.rerank import Reranker
from lamina.retrieval.store.base import Filters, Hit, Store

__all__ = ["Mode", "Reranker", "Searcher", "convex_fusion", "mmr", "rrf_fusion"]

Mode = Literal["hybrid", "dense", "bm25"]
Fusion = Literal["convex", "rrf"]
MODES: tuple[str, ...] = ("hybrid", "dense", "bm25")


def convex_fusion(
    dense: dict[int, float], sparse: dict[int, float], alpha: float = 0.5
) -> dict[int, float]:
    """α·dense + (1-α)·bm25, each min-max normalised over its own candidates; a candidate
    missing from one list gets that list's minimum (0 after normalisation)."""
    fused: dict[int, float] = {}
    for weight, scores in ((alpha, dense), (1.0 - alpha, sparse)):
        if not scores:
            continue
        low, high = min(scores.values()), max(scores.values())
        span = high - low or 1.0
        for key, value in scores.items():
            fused[key] = fused.get(key, 0.0) + weight * (value - low) / span
    for key in dense.keys() | sparse.keys():
        fused.setdefault(key, 0.0)
    return dict(sorted(fused.items(), key=lambda item: -item[1]))


def rrf_fusion(*rankings: Sequence[int], k: int = 60) -> dict[int, float]:
    """Reciprocal-rank fusion: Σ 1/(k + rank).

    >>> rrf_fusion([1, 2], [2, 3])
    {2: 0.03252247488101534, 1: 0.01639344262295082, 3: 0.016129032258064516}
    """
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return dict(sorted(fused.items(), key=lambda item: -item[1]))


def mmr(
    relevance: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32], k: int, lam: float
) -> list[int]:
    """Maximal marginal relevance: pick k items trading relevance for novelty.

    >>> v = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    >>> mmr(np.array([0.9, 0.89, 0.5], dtype=np.float32), v, k=2, lam=0.5)
    [0, 2]
    """
    chosen: list[int] = []
    similarity = vectors @ vectors.T
    rest = list(range(len(relevance)))
    while rest and len(chosen) < k:
        if chosen:
            redundancy = similarity[np.ix_(rest, chosen)].max(axis=1)
        else:
            redundancy = np.zeros(len(rest), dtype=np.float32)
        gains = lam * relevance[rest] - (1 - lam) * redundancy
        best = rest[int(np.argmax(gains))]
        chosen.append(best)
        rest.remove(best)
    return chosen


class Searcher:
    """Searches one store: fusion, MMR and reranking over the store's own first stage.
    Thread-safe, and stateless apart from its settings."""

    def __init__(
        self,
        store: Store,
        embedder: TextEmbedder,
        *,
        reranker: Reranker | None = None,
        fusion: Fusion = "convex",
        alpha: float = 0.5,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.reranker = reranker
        self.fusion = fusion
        self.alpha = alpha

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: Mode = "hybrid",
        filters: Filters | None = None,
        candidates: int = 100,
        mmr_lambda: float | None = None,
        rerank: bool = True,
    ) -> list[Hit]:
        """The best ``k`` chunks for ``query``. ``mmr_lambda`` (0..1) trades relevance for
        diversity; ``filters`` restricts by collection, source, page or document metadata."""
        if mode not in MODES:
            raise InvalidRequestError(f"Unknown search mode {mode!r}: use one of {MODES}.")
        if not query.strip():
            raise InvalidRequestError("The query is empty.")
        pool = max(candidates, k)
        # Embed before the read transaction: it can take a while and needs no data.
        vector = self.embedder.embed_query(query) if mode in ("hybrid", "dense") else None
        with self.store.reading():
            dense: dict[int, float] = {}
            sparse: dict[int, float] = {}
            if vector is not None:
                dense = dict(self.store.search_dense(vector, pool, filters))
            if mode in ("hybrid", "bm25"):
                sparse = dict(self.store.search_sparse(query, pool, filters))
            if mode == "dense":
                fused = dense
            elif mode == "bm25":
                fused = sparse
            elif self.fusion == "rrf":
                fused = rrf_fusion(list(dense), list(sparse))
            else:
                fused = convex_fusion(dense, sparse, self.alpha)
            ranked = list(fused.items())[: pool if (mmr_lambda is not None or self.reranker) else k]
            if mmr_lambda is not None and ranked:
                relevance = np.array([s for _, s in ranked], dtype=np.float32)
                vectors = self.store.vectors([key for key, _ in ranked])
                ranked = [ranked[i] for i in mmr(relevance, vectors, k, mmr_lambda)]
            hits = self._hits(ranked, dense, sparse)
        if rerank and self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[:k]

    def _hits(
        self, ranked: list[tuple[int, float]], dense: dict[int, float], sparse: dict[int, float]
    ) -> list[Hit]:
        stored = {c.key: c for c in self.store.get([key for key, _ in ranked])}
        hits = []
        for key, score in ranked:
            if key not in stored:  # deleted since the first stage saw it
                continue
            stages = {}
            if key in dense:
                stages["dense"] = dense[key]
            if key in sparse:
                stages["bm25"] = sparse[key]
            hits.append(Hit(chunk=stored[key], score=score, scores=stages))
        return hits
