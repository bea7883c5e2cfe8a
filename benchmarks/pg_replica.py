"""Stateless search replicas over PostgreSQL at scale: replica memory, latency and HNSW recall.

    .venv/bin/python benchmarks/pg_replica.py --dsn postgresql://me@127.0.0.1:5432/db \\
        --sizes 10000,100000,1000000

One PostgresStore (schema ``bench_replica``, dropped first) grows through ``--sizes`` chunks of
synthetic data written with ``PostgresStore.add_many`` (the path ``lamina ingest`` takes):
documents of four chunks of 50 words drawn from a Zipfian vocabulary of made-up words, and
384-d clustered unit vectors (``dense_scale.synthetic``, the imitation of sentence embeddings).
While loading, the HNSW index is dropped and built again afterwards in one ``CREATE INDEX``,
as a bulk load should; its build time is reported apart. ``--reuse`` keeps the rows an earlier
run loaded (give its largest size) to measure again without loading.

At each size a fresh replica process (this script with ``--replica``) opens the store and runs
the queries through Lamina's ``Searcher`` (dense, hybrid, bm25; k=10 from 100 candidates per
list), one at a time, so p50/p95 are single-query latencies over the DSN's transport (give a
``127.0.0.1`` DSN for loopback TCP). The replica's RSS after its queries and its peak RSS are
what scale-out needs to stay flat as the corpus grows. A dense query is a stored vector moved to
cosine ~0.7 from it; its text is three of that chunk's words (none of the 100 most frequent).
Recall@10 compares ``search_dense`` (HNSW, at each ``--recall-ef``) with
``search_dense(exact=True)`` (every vector compared in PostgreSQL).

Numbers are only comparable on one machine, and noisy when other work shares its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from lamina.retrieval.documents import Chunk, Document, LoadedDocument
from lamina.retrieval.store.postgres import PostgresStore

SCHEMA = "bench_replica"
WORDS_PER_CHUNK = 50
CHUNKS_PER_DOCUMENT = 4
VOCABULARY = 30_000
MODES = ("dense", "hybrid", "bm25")
Vectors = npt.NDArray[np.float32]


def rss_mb() -> tuple[float, float]:
    """(RSS, peak RSS) of this process in MB."""
    found: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


# -- the replica: a separate process that only searches ----------------------------------------


class FixedEmbedder:
    """The query vectors the loader chose, by query text (the replica embeds nothing)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self._vectors = {text: np.asarray(v, dtype=np.float32) for text, v in vectors.items()}

    def embed_query(self, text: str) -> Vectors:
        return self._vectors[text]

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return np.stack([self._vectors[t] for t in texts])


def replica(dsn: str, queries_file: Path, ef_search: int) -> dict[str, Any]:
    from lamina.retrieval.search import Searcher

    queries: list[dict[str, Any]] = json.loads(queries_file.read_text())
    embedder = FixedEmbedder({q["text"]: q["vector"] for q in queries})
    store = PostgresStore(dsn, schema=SCHEMA, create=False, ef_search=ef_search)
    searcher = Searcher(store, embedder)
    searcher.search(queries[0]["text"], k=10)  # warm: connections, imports
    started = rss_mb()[0]
    result: dict[str, Any] = {"rss_start_mb": started}
    for mode in MODES:
        latencies = []
        for query in queries:
            began = time.perf_counter()
            hits = searcher.search(query["text"], k=10, mode=mode)  # type: ignore[arg-type]
            latencies.append((time.perf_counter() - began) * 1000)
            assert hits, f"no hits for {query['text']!r} in {mode}"
        result[mode] = (statistics.median(latencies), statistics.quantiles(latencies, n=20)[-1])
    result["rss_mb"], result["peak_rss_mb"] = rss_mb()
    store.close()
    return result


# -- the loader --------------------------------------------------------------------------------


def vocabulary(rng: np.random.Generator) -> list[str]:
    """Made-up lowercase words (consonant-vowel syllables), distinct, none an English word."""
    consonants, vowels = list("bdfgklmnprstvz"), list("aeiou")
    words: set[str] = set()
    while len(words) < VOCABULARY:
        syllables = rng.integers(2, 5)
        words.add(
            "".join(
                consonants[rng.integers(len(consonants))] + vowels[rng.integers(len(vowels))]
                for _ in range(syllables)
            )
            + "x"  # no stemmer rule ends in x: every word is its own term
        )
    return sorted(words)


def documents(
    first: int, last: int, vectors: Vectors, words: list[str], rng: np.random.Generator
) -> list[tuple[LoadedDocument, list[Chunk], Vectors]]:
    """Documents holding chunks ``first .. last-1`` (a multiple of CHUNKS_PER_DOCUMENT)."""
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    zipf = 1.0 / ranks**1.07
    drawn = rng.choice(len(words), size=(last - first, WORDS_PER_CHUNK), p=zipf / zipf.sum())
    items = []
    for start in range(first, last, CHUNKS_PER_DOCUMENT):
        texts = [
            " ".join(words[w] for w in drawn[row - first])
            for row in range(start, start + CHUNKS_PER_DOCUMENT)
        ]
        text = "\n\n".join(texts)
        number = start // CHUNKS_PER_DOCUMENT
        document = Document(
            id=f"d{number}", source=f"synthetic/{number}.txt", content_hash=str(number)
        )
        chunks, offset = [], 0
        for row, piece in enumerate(texts, start=start):
            chunks.append(
                Chunk(
                    id=f"c{row}",
                    document_id=document.id,
                    text=piece,
                    start=offset,
                    end=offset + len(piece),
                )
            )
            offset += len(piece) + 2
        loaded = LoadedDocument(document=document, text=text, blocks=[])
        items.append((loaded, chunks, vectors[start : start + CHUNKS_PER_DOCUMENT]))
    return items


def grow(
    store: PostgresStore, db: psycopg.Connection[Any], have: int, want: int, **data: Any
) -> int:
    """Write chunks ``have .. want-1``; returns seconds spent building the HNSW index."""
    batch = 1000 * CHUNKS_PER_DOCUMENT
    if have >= want:
        return 0
    if have == 0:  # the first write fixes the dimension and creates the HNSW index
        store.add_many("bench", documents(0, batch, **data))
        have = batch
    db.execute(f"DROP INDEX IF EXISTS {SCHEMA}.chunks_embedding")
    began = time.perf_counter()
    for first in range(have, want, batch):
        store.add_many("bench", documents(first, min(first + batch, want), **data))
        if (first // batch) % 25 == 0:
            done = min(first + batch, want)
            rate = (done - have) / (time.perf_counter() - began)
            print(f"#   {done:,} chunks ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    began = time.perf_counter()
    db.execute(
        f"CREATE INDEX chunks_embedding ON {SCHEMA}.chunks USING hnsw (embedding vector_ip_ops)"
    )
    db.execute(f"VACUUM ANALYZE {SCHEMA}.chunks")
    db.execute(f"VACUUM ANALYZE {SCHEMA}.documents")
    return int(time.perf_counter() - began)


def queries_for(
    n: int, count: int, store: PostgresStore, vectors: Vectors, words: list[str],
    rng: np.random.Generator,
) -> list[dict[str, Any]]:  # fmt: skip
    from dense_scale import _jitter

    rank = {word: number for number, word in enumerate(words)}
    rows = rng.choice(n, size=count, replace=False)
    moved = _jitter(rng, vectors[rows], 0.7, 0.2)
    texts = {c.chunk.id: c.chunk.text for c in _chunks_by_id(store, [f"c{r}" for r in rows])}
    made = []
    for row, vector in zip(rows, moved, strict=True):
        # Three of the chunk's words outside the 100 most frequent, which behave like stop
        # words here (the most frequent is in nearly every chunk).
        words = sorted({w for w in texts[f"c{row}"].split() if rank[w] >= 100})
        picked = rng.choice(len(words), size=min(3, len(words)), replace=False)
        made.append({"text": " ".join(words[i] for i in picked), "vector": vector.tolist()})
    return made


def _chunks_by_id(store: PostgresStore, ids: list[str]) -> list[Any]:
    with psycopg.connect(store.dsn) as db:
        keys = [
            r[0]
            for r in db.execute(
                f"SELECT key FROM {SCHEMA}.chunks WHERE id = ANY(%s::text[])", (ids,)
            ).fetchall()
        ]
    return store.get(keys)


def recall(
    store: PostgresStore, queries: list[dict[str, Any]], count: int, efs: Sequence[int]
) -> list[float]:
    """Mean recall@10 of the HNSW search against the exact one, at each ``ef_search``."""
    found: list[list[float]] = [[] for _ in efs]
    for query in queries[:count]:
        vector = np.asarray(query["vector"], dtype=np.float32)
        exact = {c.key for c in store.search_dense(vector, 10, exact=True)}
        for ef, scores in zip(efs, found, strict=True):
            approximate = {c.key for c in store.search_dense(vector, 10, ef_search=ef)}
            scores.append(len(approximate & exact) / len(exact))
    return [statistics.fmean(scores) for scores in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--recall-queries", type=int, default=100)
    parser.add_argument("--ef-search", type=int, default=100)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--recall-ef", default="40,100,400", help="ef_search values for recall")
    parser.add_argument("--reuse", action="store_true", help="keep the rows already loaded")
    parser.add_argument("--replica", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replica:
        print(json.dumps(replica(args.dsn, args.replica, args.ef_search)))
        return

    from dense_scale import synthetic

    sizes = sorted(
        int(s) // CHUNKS_PER_DOCUMENT * CHUNKS_PER_DOCUMENT for s in args.sizes.split(",")
    )
    efs = [int(e) for e in args.recall_ef.split(",")]
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    vectors, _ = synthetic(sizes[-1], args.dim, 0)
    words = vocabulary(rng)
    print(f"# data generated in {time.perf_counter() - began:.0f}s", file=sys.stderr, flush=True)
    admin = psycopg.connect(args.dsn, autocommit=True)
    if not args.reuse:
        admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    store = PostgresStore(args.dsn, schema=SCHEMA, ef_search=args.ef_search)
    versions = admin.execute(
        "SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
    ).fetchone()
    settings = {
        name: admin.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
        for name in ("shared_buffers", "maintenance_work_mem", "max_parallel_maintenance_workers")
    }
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {versions}, {settings}, "
          f"load {os.getloadavg()}", flush=True)  # fmt: skip
    header = (
        "| chunks | load s | HNSW build s | database MB | replica RSS MB (peak) | "
        "dense p50/p95 ms | hybrid p50/p95 ms | bm25 p50/p95 ms | recall@10 HNSW vs exact "
        f"(ef_search {' / '.join(map(str, efs))}) |"
    )
    rows = [header, "|" + " ---: |" * 9]
    have = store.count()[1]
    data = {"vectors": vectors, "words": words, "rng": rng}
    for n in sizes:
        began = time.perf_counter()
        build_s = grow(store, admin, have, n, **data)
        load_s = time.perf_counter() - began - build_s
        have = n
        (size,) = admin.execute("SELECT pg_database_size(current_database())").fetchone() or (0,)
        queries = queries_for(n, args.queries, store, **data)
        recalls = recall(store, queries, args.recall_queries, efs)
        queries_file = Path(f"/tmp/pg_replica_queries_{os.getpid()}.json")
        queries_file.write_text(json.dumps(queries))
        measured = subprocess.run(
            [sys.executable, __file__, "--dsn", args.dsn, "--replica", str(queries_file),
             "--ef-search", str(args.ef_search)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        queries_file.unlink()
        result = json.loads(measured.stdout)
        latency = " | ".join(f"{result[m][0]:.1f} / {result[m][1]:.1f}" for m in MODES)
        rows.append(
            f"| {n:,} | {load_s:.0f} | {build_s} | {size / 2**20:,.0f} | "
            f"{result['rss_mb']:.0f} ({result['peak_rss_mb']:.0f}) | {latency} | "
            f"{' / '.join(f'{r:.3f}' for r in recalls)} |"
        )
        print(rows[-1], f"load {os.getloadavg()}", flush=True)
    store.close()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
