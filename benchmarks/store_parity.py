"""Store parity on BEIR SciFact: the same ingest and searches on SQLiteStore and PostgresStore.

    .venv/bin/python benchmarks/store_parity.py                     # starts its own PostgreSQL
    .venv/bin/python benchmarks/store_parity.py --dsn postgresql://me@localhost/lamina

The corpus is embedded once (MiniLM by default): a first ingest into a scratch SQLite index
fills an in-memory cache of chunk vectors, then both stores are ingested from that cache, so
their ingest times compare the stores, not the embedder. Each store is then searched through
``lamina.evals.beir.run_beir`` (the shared Searcher, built from ``store.snapshot()``) in every
mode; later modes reuse the ingested index (their ingest finds every document unchanged).
The PostgreSQL rows ``search_dense`` search inside the database instead: the HNSW index, and
the exact scan. Without ``--dsn`` a PostgreSQL with pgvector is started with pgserver (unix
socket only) in a temporary folder and stopped at the end.

Numbers are only comparable on one machine, and noisy when other work shares its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from lamina.evals.beir import BeirResult, load_qrels, load_queries, run_beir
from lamina.evals.metrics import ndcg_at_k, recall_at_k
from lamina.retrieval.index import Embedder
from lamina.retrieval.store.postgres import PostgresStore

# ../shared/datasets/scifact next to the checkout, as every developer and CI has it.
DATA = Path(
    os.environ.get("SCIFACT", Path(__file__).resolve().parents[2] / "shared/datasets/scifact")
)
MODES = ("hybrid", "dense", "bm25")


class CachedEmbedder:
    """Wraps an embedder and remembers every vector it made, so a second ingest is free."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.documents: dict[str, npt.NDArray[np.float32]] = {}
        self.queries: dict[str, npt.NDArray[np.float32]] = {}

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        missing = list(dict.fromkeys(t for t in texts if t not in self.documents))
        if missing:
            for text, vector in zip(missing, self.inner.embed_documents(missing), strict=True):
                self.documents[text] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self.documents[t] for t in texts])

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        if text not in self.queries:
            self.queries[text] = self.inner.embed_query(text)
        return self.queries[text]


@contextmanager
def postgres(dsn: str | None) -> Iterator[str]:
    """The given DSN, or a throwaway pgserver PostgreSQL (with pgvector) for the run."""
    if dsn:
        yield dsn
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    folder = Path(tempfile.mkdtemp(prefix="lamina-pg-"))
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def dense_in_database(
    store: PostgresStore,
    embedder: CachedEmbedder,
    data: Path,
    *,
    exact: bool,
    depth: int = 100,
) -> dict[str, float]:
    """nDCG@10 and Recall@100 of ``store.search_dense`` alone; a document scores as its best
    chunk, as in run_beir."""
    queries = load_queries(data / "queries.jsonl")
    qrels = load_qrels(data / "qrels" / "test.tsv")
    judged = [q for q in qrels if q in queries]
    run: dict[str, dict[str, float]] = {}
    latencies = []
    for query_id in judged:
        vector = embedder.embed_query(queries[query_id])
        began = time.perf_counter()
        hits = store.search_dense(vector, depth * 3, exact=exact, ef_search=depth * 3)
        latencies.append((time.perf_counter() - began) * 1000)
        ranking: dict[str, float] = {}
        for hit in hits:
            ranking.setdefault(str(hit.chunk.metadata.get("_id", hit.chunk.source)), hit.score)
        run[query_id] = dict(list(ranking.items())[:depth])
    judged_qrels = {q: qrels[q] for q in judged}
    return {
        "ndcg@10": ndcg_at_k(run, judged_qrels, 10),
        "recall@100": recall_at_k(run, judged_qrels, 100),
        "p50_ms": float(np.median(latencies)),
    }


def row(store: str, mode: str, result: BeirResult) -> dict[str, Any]:
    return {
        "store": store,
        "mode": mode,
        "ndcg@10": round(result.ndcg_10, 4),
        "recall@100": round(result.recall_100, 4),
        "mrr@10": round(result.mrr_10, 4),
        "p50_ms": round(result.p50_ms, 1),
        "documents": result.documents,
        "chunks": result.chunks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="a BEIR folder")
    parser.add_argument("--dsn", default=None, help="PostgreSQL URI (default: start pgserver)")
    parser.add_argument("--embedder", default="minilm", help="embedder spec (default: minilm)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    args = parser.parse_args()

    from lamina.models.embeddings import get_embedder

    embedder = CachedEmbedder(get_embedder(args.embedder))
    modes = [m for m in args.modes.split(",") if m]
    scratch = Path(tempfile.mkdtemp(prefix="lamina-parity-"))
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    try:
        began = time.perf_counter()
        run_beir(args.data, mode="bm25", embedder=embedder, index_dir=scratch / "embed-pass")
        timings["embed pass (chunk + embed + SQLite)"] = time.perf_counter() - began
        for mode in modes:  # the first run per store ingests; later ones find it unchanged
            result = run_beir(args.data, mode=mode, embedder=embedder, index_dir=scratch / "sq")  # type: ignore[arg-type]
            timings.setdefault("sqlite ingest (cached vectors)", result.ingest_s)
            rows.append(row("sqlite", mode, result))
        with postgres(args.dsn) as dsn:
            schema = f"parity_{uuid.uuid4().hex[:8]}"
            for mode in modes:
                store = PostgresStore(dsn, schema=schema)
                result = run_beir(
                    args.data,
                    mode=mode,  # type: ignore[arg-type]
                    embedder=embedder,
                    index_dir=scratch / "pg-cache",
                    store=store,
                )
                timings.setdefault("postgres ingest (cached vectors)", result.ingest_s)
                rows.append(row("postgres", mode, result))
            store = PostgresStore(dsn, schema=schema)
            try:
                for exact in (False, True):
                    scores = dense_in_database(store, embedder, args.data, exact=exact)
                    rows.append(
                        {
                            "store": "postgres search_dense",
                            "mode": "dense exact" if exact else "dense HNSW",
                            **{k: round(v, 4 if "@" in k else 1) for k, v in scores.items()},
                        }
                    )
            finally:
                store.close()
                with psycopg.connect(dsn, autocommit=True) as db:
                    db.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report = {
        "data": str(args.data),
        "embedder": embedder.name,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "rows": rows,
        "max_ndcg_gap": max(
            abs(a["ndcg@10"] - b["ndcg@10"])
            for a in rows
            for b in rows
            if a["store"] == "sqlite" and b["store"] == "postgres" and a["mode"] == b["mode"]
        ),
    }
    if args.as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"BEIR {args.data.name}, embedder {embedder.name}, {report['machine']}")
    for name, seconds in report["timings_s"].items():
        print(f"  {name:<40} {seconds:8.1f} s")
    print(f"{'store':<24}{'mode':<13}{'nDCG@10':>9}{'R@100':>9}{'p50 ms':>9}")
    for r in rows:
        print(
            f"{r['store']:<24}{r['mode']:<13}{r['ndcg@10']:>9.4f}{r['recall@100']:>9.4f}"
            f"{r['p50_ms']:>9.1f}"
        )
    print(f"largest SQLite/PostgreSQL nDCG@10 gap (same mode): {report['max_ndcg_gap']:.4f}")


if __name__ == "__main__":
    main()
