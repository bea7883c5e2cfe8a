"""Dense search at scale: IVF (and optionally HNSW) against exact search on synthetic vectors.

    .venv/bin/python benchmarks/dense_scale.py --n 1000000 --dim 384 --queries 200

The vectors imitate sentence embeddings, which are clustered at several scales: a two-level
Gaussian mixture on the unit sphere (``n/20000`` broad topics; ``n/250`` overlapping
sub-topics of heavy-tailed sizes at cosine ~0.8 from their topic; each point at cosine ~0.7
from its sub-topic, with per-point spread). A query is a data point moved to cosine ~0.7 from
it, so it is near the data but never on it, and its neighbours span several sub-topics. Ground truth
is faiss ``IndexFlatIP`` (exact). Each query is searched alone, as the Searcher does, so p50/p95
are single-query latencies; ``cpu`` is the CPU time of the searching thread, which other
processes on the machine do not inflate as they do wall time. Memory is the index's own bytes
and the process RSS growth while building it (the input vectors are not counted).

Numbers are only comparable on one machine, and noisy when other work shares its cores.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lamina.retrieval.derived.dense import ExactDenseIndex, IVFDenseIndex

Vectors = npt.NDArray[np.float32]
Search = Callable[[Vectors, int], tuple[npt.NDArray[np.int64], Any]]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _normalise(x: npt.NDArray[np.floating[Any]]) -> Vectors:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _jitter(rng: np.random.Generator, base: Vectors, cosine: float, spread: float) -> Vectors:
    """Points at about ``cosine`` from ``base`` rows (noise norm varies by ±``spread``)."""
    radius = math.sqrt(1 / cosine**2 - 1)
    scale = radius * rng.uniform(1 - spread, 1 + spread, size=(len(base), 1))
    noise = rng.standard_normal(base.shape, dtype=np.float32) / math.sqrt(base.shape[1])
    return _normalise(base + scale * noise)


def synthetic(n: int, dim: int, queries: int, seed: int = 0) -> tuple[Vectors, Vectors]:
    rng = np.random.default_rng(seed)
    topics = _normalise(rng.standard_normal((max(4, n // 20_000), dim)))
    n_centres = max(16, n // 250)
    centres = _jitter(rng, topics[rng.integers(len(topics), size=n_centres)], 0.8, 0.2)
    weights = rng.pareto(1.5, size=n_centres) + 1  # a few big clusters, many small ones
    assignment = rng.choice(n_centres, size=n, p=weights / weights.sum())
    data = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: keeps the float64 temporaries small
        block = assignment[start : start + 100_000]
        data[start : start + len(block)] = _jitter(rng, centres[block], 0.7, 0.3)
    near = data[rng.choice(n, size=queries, replace=False)]
    return data, _jitter(rng, near, 0.7, 0.2)


@dataclass
class Row:
    n: int
    index: str
    params: str
    build_s: float
    index_mb: float
    rss_mb: float
    p50_ms: float
    p95_ms: float
    cpu_ms: float
    recall: float


def measure(search: Search, queries: Vectors, truth: npt.NDArray[np.int64]) -> tuple[float, ...]:
    search(queries[0], 10)  # warm
    latencies, cpu, recalls = [], [], []
    for query, expected in zip(queries, truth, strict=True):
        began, began_cpu = time.perf_counter(), time.thread_time()
        rows, _ = search(query, 10)
        latencies.append((time.perf_counter() - began) * 1000)
        cpu.append((time.thread_time() - began_cpu) * 1000)
        recalls.append(len(set(rows.tolist()) & set(expected.tolist())) / len(expected))
    p95 = statistics.quantiles(latencies, n=20)[-1]
    return statistics.median(latencies), p95, statistics.median(cpu), statistics.fmean(recalls)


def run(n: int, dim: int, n_queries: int, hnsw: bool, sweep: bool, exact: bool) -> list[Row]:
    import faiss

    began = time.perf_counter()
    data, queries = synthetic(n, dim, n_queries)
    print(f"# n={n}: generated in {time.perf_counter() - began:.1f}s", flush=True)
    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    _, truth = flat.search(queries, 10)
    del flat
    rows: list[Row] = []

    if exact:
        flat_index = ExactDenseIndex(data)
        p50, p95, cpu, recall = measure(flat_index.search, queries, truth)
        mb = flat_index.memory_bytes() / 2**20
        rows.append(Row(n, "exact", "numpy", 0.0, mb, 0, p50, p95, cpu, recall))
        print(rows[-1], flush=True)

    gc.collect()
    before, began = rss_mb(), time.perf_counter()
    ivf = IVFDenseIndex.build(data)
    build_s, grown = time.perf_counter() - began, rss_mb() - before
    default = ivf.nprobe
    probes = sorted({default // 2, default, default * 2}) if sweep else [default]
    for nprobe in [p for p in probes if p >= 1]:
        ivf.nprobe = ivf.index.nprobe = nprobe
        p50, p95, cpu, recall = measure(ivf.search, queries, truth)
        params = f"nlist={ivf.nlist} nprobe={nprobe}" + (" (default)" if nprobe == default else "")
        mb = ivf.memory_bytes() / 2**20
        rows.append(Row(n, "ivf-flat", params, build_s, mb, grown, p50, p95, cpu, recall))
        print(rows[-1], flush=True)
    del ivf
    gc.collect()

    if hnsw:
        before, began = rss_mb(), time.perf_counter()
        graph = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = 40
        graph.add(data)
        build_s, grown = time.perf_counter() - began, rss_mb() - before
        for ef in (32, 64, 128) if sweep else (64,):
            graph.hnsw.efSearch = ef

            def search(q: Vectors, k: int, graph: Any = graph) -> tuple[Any, Any]:
                scores, ids = graph.search(q.reshape(1, -1), k)
                return ids[0], scores[0]

            p50, p95, cpu, recall = measure(search, queries, truth)
            mb = (n * (dim * 4 + 32 * 2 * 4 * 1.1)) / 2**20  # vectors + ~level-0 links
            rows.append(
                Row(n, "hnsw-flat", f"M=32 ef={ef}", build_s, mb, grown, p50, p95, cpu, recall)
            )
            print(rows[-1], flush=True)
        del graph
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--compare", type=int, default=100_000, help="a smaller n (0: none)")
    parser.add_argument("--hnsw", action="store_true", help="also build faiss HNSW (slow)")
    parser.add_argument("--no-exact", action="store_true", help="skip timing exact search")
    parser.add_argument("--sweep", action="store_true", help="also half and double nprobe/ef")
    args = parser.parse_args()
    import faiss

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"faiss {faiss.__version__} with {faiss.omp_get_max_threads()} threads",
        flush=True,
    )
    sizes = [s for s in (args.compare, args.n) if s]
    table = [
        row
        for n in sizes
        for row in run(n, args.dim, args.queries, args.hnsw, args.sweep, not args.no_exact)
    ]
    head = f"{'n':>9} {'index':<9} {'params':<30} {'build s':>8} {'index MB':>9} "
    print("\n" + head + f"{'RSS+ MB':>8} {'p50 ms':>7} {'p95 ms':>7} {'cpu ms':>7} {'R@10':>6}")
    for r in table:
        print(
            f"{r.n:>9} {r.index:<9} {r.params:<30} {r.build_s:>8.1f} {r.index_mb:>9.0f} "
            f"{r.rss_mb:>8.0f} {r.p50_ms:>7.2f} {r.p95_ms:>7.2f} {r.cpu_ms:>7.2f} {r.recall:>6.3f}"
        )


if __name__ == "__main__":
    main()
