"""Retrieval on a BEIR dataset: Lamina next to plain sentence-transformers + bm25s, one run.

The baseline is what a user would otherwise write: sentence-transformers' default ``encode``
of "title text" with all-MiniLM-L6-v2 (the same bundled weights), bm25s with English stemming
and stopwords, and reciprocal-rank fusion of the two. Lamina runs ``run_beir`` (ingest into
a fresh index, then every query one at a time, query embedding included).

    python benchmarks/retrieval.py [--data ../shared/datasets/scifact] [--skip-baseline]
        [--modes hybrid]     # the ingest ratio needs only hybrid

The ingest ratio is Lamina's whole ingest + index time over the baseline's encode time alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from lamina.evals.beir import load_qrels, load_queries, run_beir
from lamina.evals.metrics import mrr_at_k, ndcg_at_k, recall_at_k

Run = dict[str, dict[str, float]]


def baseline(data: Path, split: str) -> tuple[dict[str, Run], float, list[float]]:
    """(runs by method, encode seconds, per-query ms of the hybrid baseline)."""
    import bm25s
    import Stemmer
    from sentence_transformers import SentenceTransformer

    from lamina.models.embeddings.local import minilm_folder

    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open()]
    ids = [str(d["_id"]) for d in corpus]
    texts = [f"{d.get('title', '')} {d['text']}".strip() for d in corpus]
    queries = load_queries(data / "queries.jsonl")
    qrels = load_qrels(data / "qrels" / f"{split}.tsv")
    judged = [q for q in qrels if q in queries]

    model = SentenceTransformer(str(minilm_folder()), device="cpu")
    started = time.perf_counter()
    doc_vectors = model.encode(texts, normalize_embeddings=True)
    encode_s = time.perf_counter() - started

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )

    runs: dict[str, Run] = {"bm25s": {}, "st-dense": {}, "rrf": {}}
    latencies = []
    for qid in judged:
        began = time.perf_counter()
        query_vector = model.encode([queries[qid]], normalize_embeddings=True)[0]
        dense = doc_vectors @ query_vector
        top_dense = np.argsort(-dense)[:100]
        tokens = bm25s.tokenize(
            [queries[qid]], stopwords="en", stemmer=stemmer, show_progress=False
        )
        docs, scores = retriever.retrieve(tokens, k=100, show_progress=False)
        rrf: dict[str, float] = {}
        for rank, row in enumerate(top_dense):
            rrf[ids[row]] = rrf.get(ids[row], 0.0) + 1 / (60 + rank + 1)
        for rank, row in enumerate(docs[0]):
            rrf[ids[row]] = rrf.get(ids[row], 0.0) + 1 / (60 + rank + 1)
        latencies.append((time.perf_counter() - began) * 1000)
        runs["st-dense"][qid] = {ids[r]: float(dense[r]) for r in top_dense}
        runs["bm25s"][qid] = {ids[r]: float(s) for r, s in zip(docs[0], scores[0], strict=True)}
        runs["rrf"][qid] = dict(sorted(rrf.items(), key=lambda x: -x[1])[:100])
    return runs, encode_s, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/scifact"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--modes", default="hybrid,dense,bm25", help="Lamina modes, each a fresh ingest"
    )
    args = parser.parse_args()

    import onnxruntime

    print(
        f"{platform.machine()}, {os.cpu_count()} cores; onnxruntime {onnxruntime.__version__}; "
        f"dataset {args.data.name} ({args.split})\n"
    )
    qrels = load_qrels(args.data / "qrels" / f"{args.split}.tsv")
    header = f"{'system':32} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'index s':>8} {'p50 ms':>7}"
    rows = []
    encode_s = None
    if not args.skip_baseline:
        runs, encode_s, latencies = baseline(args.data, args.split)
        for name, run in runs.items():
            judged = {q: qrels[q] for q in run}
            p50 = statistics.median(latencies) if name == "rrf" else float("nan")
            rows.append(
                (
                    f"baseline {name}",
                    ndcg_at_k(run, judged),
                    recall_at_k(run, judged),
                    mrr_at_k(run, judged),
                    encode_s,
                    p50,
                )
            )
    lamina_ingest = None
    for mode in args.modes.split(","):
        result = run_beir(args.data, split=args.split, mode=mode)  # type: ignore[arg-type]
        rows.append(
            (
                f"lamina {mode}",
                result.ndcg_10,
                result.recall_100,
                result.mrr_10,
                result.ingest_s,
                result.p50_ms,
            )
        )
        if mode == "hybrid":
            lamina_ingest = result.ingest_s
    print(header)
    print("-" * len(header))
    for name, ndcg, recall, mrr, seconds, p50 in rows:
        print(f"{name:32} {ndcg:>8.4f} {recall:>7.4f} {mrr:>7.4f} {seconds:>8.1f} {p50:>7.1f}")
    if encode_s and lamina_ingest:
        print(
            f"\ningest ratio (Lamina ingest+index / sentence-transformers encode): "
            f"{lamina_ingest / encode_s:.3f}"
        )


if __name__ == "__main__":
    main()
