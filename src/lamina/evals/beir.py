"""The BEIR retrieval benchmark: ingest a BEIR folder into a fresh index, run every judged
query one at a time (query embedding included), score the ranking.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/SPLIT.tsv`` (``query-id``, ``corpus-id``, ``score``).
Chunks are ranked and each document scores as its best chunk.

``store`` (a URL, e.g. ``postgresql://...``) puts the index there; the searches then run
inside that store. The result records the store's scheme and the process's peak memory.
"""

from __future__ import annotations

import csv
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lamina.errors import InvalidRequestError
from lamina.evals.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from lamina.models.embeddings import Embedder
from lamina.retrieval.index import Index
from lamina.retrieval.ingest import Progress
from lamina.retrieval.search import Mode
from lamina.retrieval.store import scheme_of

__all__ = ["BeirResult", "load_qrels", "load_queries", "run_beir"]


@dataclass
class BeirResult:
    ndcg_10: float
    recall_100: float
    mrr_10: float
    ingest_s: float
    p50_ms: float
    p95_ms: float
    queries: int
    documents: int
    chunks: int
    mode: str
    store: str = "sqlite"
    peak_rss_mb: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The keys the CLI's ``--json`` promises, plus context."""
        data = asdict(self)
        return {
            "ndcg@10": round(self.ndcg_10, 4),
            "recall@100": round(self.recall_100, 4),
            "mrr@10": round(self.mrr_10, 4),
            "ingest_s": round(self.ingest_s, 2),
            "p50_ms": round(self.p50_ms, 2),
            "p95_ms": round(self.p95_ms, 2),
            **{k: data[k] for k in ("queries", "documents", "chunks", "mode", "store")},
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


def load_queries(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8") as stream:
        return {str(r["_id"]): r["text"] for r in map(json.loads, stream) if r}


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def _folder(data: Path, split: str) -> tuple[Path, Path, Path]:
    corpus, queries = data / "corpus.jsonl", data / "queries.jsonl"
    qrels = data / "qrels" / f"{split}.tsv"
    for path in (corpus, queries, qrels):
        if not path.is_file():
            raise InvalidRequestError(
                f"{str(path)!r} is missing: a BEIR folder holds corpus.jsonl, queries.jsonl "
                f"and qrels/{split}.tsv."
            )
    return corpus, queries, qrels


def run_beir(
    data: Path,
    *,
    split: str = "test",
    mode: Mode = "hybrid",
    index_dir: Path | None = None,
    embedder: Embedder | str | None = None,
    progress: Progress | None = None,
    query_progress: Callable[[int, int], None] | None = None,
    depth: int = 100,
    store: str | None = None,
    **index_options: Any,
) -> BeirResult:
    corpus, queries_path, qrels_path = _folder(data, split)
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    judged = [q for q in qrels if q in queries]
    with tempfile.TemporaryDirectory(prefix="lamina-beir-") as scratch:
        if store is not None:
            index_options["store"] = store
        index = Index(index_dir or Path(scratch), embedder=embedder, **index_options)
        started = time.perf_counter()
        index.ingest([corpus], collection="beir", progress=progress)
        index.store.refresh()  # building the local search indexes is part of indexing
        ingest_s = time.perf_counter() - started
        documents, chunks = index.count()
        index.search(queries[judged[0]], k=1, mode=mode)  # warm caches, not timed
        run: dict[str, dict[str, float]] = {}
        latencies: list[float] = []
        for done, query_id in enumerate(judged, start=1):
            began = time.perf_counter()
            hits = index.search(queries[query_id], k=depth * 3, mode=mode, candidates=depth * 3)
            latencies.append((time.perf_counter() - began) * 1000)
            ranking: dict[str, float] = {}
            for hit in hits:
                doc = str(hit.chunk.metadata.get("_id", hit.chunk.source))
                ranking.setdefault(doc, hit.score)  # hits come best first: keep the best chunk
                if len(ranking) == depth:
                    break
            run[query_id] = ranking
            if query_progress:
                query_progress(done, len(judged))
        index.close()
    judged_qrels = {q: qrels[q] for q in judged}
    return BeirResult(
        ndcg_10=ndcg_at_k(run, judged_qrels, 10),
        recall_100=recall_at_k(run, judged_qrels, 100),
        mrr_10=mrr_at_k(run, judged_qrels, 10),
        ingest_s=ingest_s,
        p50_ms=statistics.median(latencies),
        p95_ms=statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0],
        queries=len(judged),
        documents=documents,
        chunks=chunks,
        mode=mode,
        store=_scheme(index_options.get("store")),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def _scheme(store: object) -> str:
    """The store's kind, for the report: a URL's scheme, or an instance's engine."""
    if store is None:
        return "sqlite"
    if isinstance(store, str):
        scheme = scheme_of(store)
        return "postgresql" if scheme == "postgres" else scheme
    return type(store).__name__.removesuffix("Store").lower() or "store"
