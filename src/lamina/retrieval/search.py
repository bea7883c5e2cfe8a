"""Search over an index: BM25, dense, and their fusion; filters, MMR and reranking on top.

The derived indexes (BM25 and dense) are built from the store on first search, saved beside
it, and rebuilt when the store's generation has moved on (someone ingested). Rebuilding costs
seconds (1.4-1.8 s at 6.6k chunks), and an ingest commits a batch every few seconds, so while
an ingest run is in progress a reader keeps serving the view it has (consistent, just missing
the newest batches; chunks deleted since are dropped from hits) and rebuilds once the run has
ended: once per burst of changes instead of once per batch. A view is never kept more than
``max_stale_s`` (60 s) past the first change it missed, so a reader of a store whose writer
died mid-run, or of a very long ingest, still catches up.

Hybrid fusion is a convex combination of min-max normalised scores over the union of both
candidate lists (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval", 2023,
found it beats reciprocal-rank fusion and is robust to its weight): ``score = α·dense +
(1-α)·bm25`` with α = 0.5 by default. RRF is available as ``fusion="rrf"``.

>>> convex_fusion({1: 2.0, 2: 1.5, 4: 1.0}, {2: 0.9, 3: 0.1}, alpha=0.5)
{2: 0.75, 1: 0.5, 4: 0.0, 3: 0.0}
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from lamina.errors import InvalidRequestError
from lamina.models.embeddings.base import TextEmbedder
from lamina.retrieval.derived.bm25 import BM25Index
from lamina.retrieval.derived.dense import ExactDenseIndex, IVFDenseIndex, top_k
from lamina.retrieval.rerank import Reranker
from lamina.retrieval.store.base import Filters, Hit, Store

__all__ = ["Mode", "Reranker", "Searcher", "convex_fusion", "mmr", "rrf_fusion"]

log = logging.getLogger(__name__)

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


@dataclass
class _Derived:
    generation: int
    keys: npt.NDArray[np.int64]
    chunk_documents: npt.NDArray[np.int64]
    bm25_chunks: BM25Index
    bm25_documents: BM25Index
    dense: ExactDenseIndex | IVFDenseIndex


#: Above this many chunks the dense index is approximate (IVF). Exact search reads every
#: vector (300 MB a query at 200k × 384: tens of ms on two cores, linear in n), while IVF
#: stays around a millisecond of CPU at 100k and a few at 1M, with recall@10 ≥ 0.95 against
#: exact (``benchmarks/dense_scale.py``). Below it, exact search is fast enough and exact.
ANN_THRESHOLD = 200_000

#: The longest a reader serves a view older than the store while an ingest is running.
MAX_STALE_S = 60.0


class Searcher:
    """Searches one store. Thread-safe; rebuilds its derived indexes when the store changes.

    The dense index is exact up to ``ann_threshold`` chunks and an IVF index above it.
    """

    def __init__(
        self,
        store: Store,
        embedder: TextEmbedder,
        *,
        cache_dir: Path | None = None,
        reranker: Reranker | None = None,
        fusion: Fusion = "convex",
        alpha: float = 0.5,
        ann_threshold: int = ANN_THRESHOLD,
        max_stale_s: float = MAX_STALE_S,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.cache_dir = cache_dir
        self.reranker = reranker
        self.fusion = fusion
        self.alpha = alpha
        self.ann_threshold = ann_threshold
        self.max_stale_s = max_stale_s
        self._derived: _Derived | None = None
        self._stale_since: float | None = None  # when the view was first seen behind the store
        self._lock = threading.Lock()

    # -- derived indexes ------------------------------------------------------------------------

    def derived(self) -> _Derived:
        generation = self.store.generation()
        with self._lock:
            current = self._derived
            if current is not None and current.generation != generation:
                now = time.monotonic()
                self._stale_since = self._stale_since or now
                if self._ingesting() and now - self._stale_since < self.max_stale_s:
                    return current  # mid-burst: rebuild once the writer is done
            if current is None or current.generation != generation:
                current = self._load(generation) or self._build()
                self._derived, self._stale_since = current, None
            return current

    def _ingesting(self) -> bool:
        """Whether the store's newest ingest run is still going (journal status 'running')."""
        runs = getattr(self.store, "runs", None)
        if runs is None:
            return False
        try:
            journal = runs()
        except Exception as exc:  # a journal we cannot read is no reason to fail a search
            log.debug("cannot read the ingest journal: %s", exc)
            return False
        return bool(journal) and journal[-1].get("status") == "running"

    def _load(self, generation: int) -> _Derived | None:
        folder = self._folder(generation)
        if folder is None or not (folder / "done.json").exists():
            return None
        try:
            done = json.loads((folder / "done.json").read_text())
            dense: ExactDenseIndex | IVFDenseIndex
            if done.get("dense") == "ivf":
                dense = IVFDenseIndex.load(folder / "dense.faiss", nprobe=int(done["nprobe"]))
            else:
                dense = ExactDenseIndex.load(folder / "vectors.npy")
            return _Derived(
                generation,
                np.load(folder / "keys.npy"),
                np.load(folder / "chunk_documents.npy"),
                BM25Index.load(folder / "bm25-chunks"),
                BM25Index.load(folder / "bm25-documents"),
                dense,
            )
        # A damaged cache is just rebuilt (faiss reports a bad file as RuntimeError).
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            log.warning("rebuilding search indexes: %s", exc)
            return None

    def _build(self) -> _Derived:
        started = time.perf_counter()
        snapshot = self.store.snapshot()
        derived = _Derived(
            snapshot.generation,
            snapshot.keys,
            snapshot.chunk_documents,
            BM25Index.build(snapshot.chunk_texts),
            BM25Index.build(snapshot.document_texts),
            self._dense(snapshot.vectors),
        )
        self._save(derived)
        log.info(
            "built search indexes over %d chunks in %.2fs",
            len(snapshot.keys),
            time.perf_counter() - started,
        )
        return derived

    def _dense(self, vectors: npt.NDArray[np.float32]) -> ExactDenseIndex | IVFDenseIndex:
        if len(vectors) > self.ann_threshold:
            return IVFDenseIndex.build(vectors)
        return ExactDenseIndex(vectors)

    def _folder(self, generation: int) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"gen-{generation}"

    def _save(self, derived: _Derived) -> None:
        folder = self._folder(derived.generation)
        if folder is None or self.cache_dir is None or derived.keys.size == 0:
            return
        try:
            for old in self.cache_dir.glob("gen-*"):
                if old != folder:
                    shutil.rmtree(old, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / "keys.npy", derived.keys)
            np.save(folder / "chunk_documents.npy", derived.chunk_documents)
            done: dict[str, object] = {"chunks": int(derived.keys.size), "dense": "exact"}
            if isinstance(derived.dense, IVFDenseIndex):
                derived.dense.save(folder / "dense.faiss")
                done.update(dense="ivf", nprobe=derived.dense.nprobe)
            else:
                derived.dense.save(folder / "vectors.npy")
            derived.bm25_chunks.save(folder / "bm25-chunks")
            derived.bm25_documents.save(folder / "bm25-documents")
            (folder / "done.json").write_text(json.dumps(done))
        except OSError as exc:  # read-only index directory: search still works from memory
            log.warning("could not save search indexes to %s: %s", folder, exc)

    def sparse_scores(
        self, derived: _Derived, query: str, mask: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.float32]:
        """BM25 evidence for every chunk: its document's score, plus a tenth of its own.

        Whole documents are the better BM25 unit (term statistics of a 100-token chunk are
        thin: on SciFact document-level BM25 scores 0.688 nDCG@10, chunk-level 0.663); the
        chunk's own score only orders the chunks of one document.
        """
        doc_mask = None
        if mask is not None:
            doc_mask = np.zeros(derived.bm25_documents.size, dtype=bool)
            doc_mask[derived.chunk_documents[mask]] = True
        documents = derived.bm25_documents.scores(query, doc_mask)
        chunks = derived.bm25_chunks.scores(query, mask)
        top_doc, top_chunk = float(documents.max(initial=0.0)), float(chunks.max(initial=0.0))
        if top_doc <= 0.0:
            return np.zeros(derived.keys.size, dtype=np.float32)
        scores = documents[derived.chunk_documents] / top_doc
        if top_chunk > 0.0:
            scores = scores + 0.1 * chunks / top_chunk
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        return scores.astype(np.float32)

    # -- search ---------------------------------------------------------------------------------

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
        derived = self.derived()
        if derived.keys.size == 0:
            return []
        mask = self._mask(derived, filters) if filters else None
        pool = max(candidates, k)
        dense: dict[int, float] = {}
        sparse: dict[int, float] = {}
        if mode in ("hybrid", "dense"):
            vector = self.embedder.embed_query(query)
            rows, scores = derived.dense.search(vector, pool, mask)
            dense = dict(zip(rows.tolist(), scores.tolist(), strict=True))
        if mode in ("hybrid", "bm25"):
            rows, scores = top_k(self.sparse_scores(derived, query, mask), pool)
            sparse = {r: s for r, s in zip(rows.tolist(), scores.tolist(), strict=True) if s > 0}
        if mode == "dense":
            fused = dense
        elif mode == "bm25":
            fused = sparse
        elif self.fusion == "rrf":
            fused = rrf_fusion(list(dense), list(sparse))
        else:
            fused = convex_fusion(dense, sparse, self.alpha)
        ranked = list(fused.items())[: pool if (mmr_lambda or self.reranker) else k]
        if mmr_lambda is not None and ranked:
            rows_ = [r for r, _ in ranked]
            relevance = np.array([s for _, s in ranked], dtype=np.float32)
            vectors = derived.dense.vectors_of(np.array(rows_, dtype=np.int64))
            picked = mmr(relevance, vectors, k, mmr_lambda)
            ranked = [ranked[i] for i in picked]
        hits = self._hits(derived, ranked, dense, sparse)
        if rerank and self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[:k]

    def _mask(self, derived: _Derived, filters: Filters) -> npt.NDArray[np.bool_]:
        allowed = np.fromiter(self.store.matching(filters), dtype=np.int64)
        mask = np.zeros(derived.keys.size, dtype=bool)
        rows = np.searchsorted(derived.keys, allowed)
        valid = rows < derived.keys.size
        rows = rows[valid]
        mask[rows[derived.keys[rows] == allowed[valid]]] = True
        return mask

    def _hits(
        self,
        derived: _Derived,
        ranked: list[tuple[int, float]],
        dense: dict[int, float],
        sparse: dict[int, float],
    ) -> list[Hit]:
        keys = [int(derived.keys[row]) for row, _ in ranked]
        stored = {c.key: c for c in self.store.get(keys)}
        hits = []
        for (row, score), key in zip(ranked, keys, strict=True):
            if key not in stored:  # deleted since the indexes were built
                continue
            stages = {}
            if row in dense:
                stages["dense"] = dense[row]
            if row in sparse:
                stages["bm25"] = sparse[row]
            hits.append(Hit(chunk=stored[key], score=score, scores=stages))
        return hits
