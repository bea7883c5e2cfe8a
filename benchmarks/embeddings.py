"""Embedding speed and fidelity on BEIR SciFact: sentence-transformers vs Lamina's ``minilm``.

    python benchmarks/embeddings.py            # full corpus (5,183 abstracts), with nDCG@10
    python benchmarks/embeddings.py --limit 500

Both embed ``title + " " + text`` of each document in the same process, one after the other.
sentence-transformers runs its default ``model.encode(texts)`` (batch 32, torch, CPU);
Lamina's rows time ``embed_documents(texts)`` after ``warm_up()`` (the one-off ONNX build or
load is shown separately). Cosine is per document against the sentence-transformers vector.
nDCG@10 (dense retrieval, the 300 test queries) is computed on the full corpus only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from lamina.models.embeddings import get_embedder
from lamina.models.embeddings.local import OnnxEmbedder, minilm_folder

# ../shared/datasets/scifact next to the checkout, as every developer and CI has it.
DATA = Path(
    os.environ.get("SCIFACT", Path(__file__).resolve().parents[2] / "shared/datasets/scifact")
)


def ndcg_at_10(
    docs: np.ndarray,
    queries: np.ndarray,
    doc_ids: list[str],
    qrels: dict[str, set[str]],
    query_ids: list[str],
) -> float:
    scores = queries @ docs.T
    total = 0.0
    for row, qid in enumerate(query_ids):
        top = np.argsort(-scores[row], kind="stable")[:10]
        relevant = qrels[qid]
        dcg = sum(1 / math.log2(rank + 2) for rank, j in enumerate(top) if doc_ids[j] in relevant)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(10, len(relevant))))
        total += dcg / ideal
    return total / len(query_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="embed only the first N documents")
    parser.add_argument("--no-int8", action="store_true", help="skip the minilm:int8 row")
    args = parser.parse_args()

    rows = [json.loads(line) for line in (DATA / "corpus.jsonl").open()]
    rows = rows[: args.limit] if args.limit else rows
    texts = [f"{r['title']} {r['text']}" for r in rows]
    doc_ids = [r["_id"] for r in rows]
    full = args.limit is None or args.limit >= 5183

    qrels: dict[str, set[str]] = defaultdict(set)
    for line in list((DATA / "qrels" / "test.tsv").open())[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels[qid].add(did)
    queries = {q["_id"]: q["text"] for q in map(json.loads, (DATA / "queries.jsonl").open())}
    query_ids = sorted(qrels, key=int)
    query_texts = [queries[q] for q in query_ids]

    import torch
    from sentence_transformers import SentenceTransformer

    print(
        f"{len(texts)} SciFact documents; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )
    st = SentenceTransformer(str(minilm_folder()), device="cpu")
    st.encode(texts[:8])
    started = time.perf_counter()
    reference = st.encode(texts)
    st_s = time.perf_counter() - started
    results = [("sentence-transformers encode", 0.0, st_s, reference)]
    ndcg = {}
    if full:
        ndcg["sentence-transformers encode"] = ndcg_at_10(
            reference, st.encode(query_texts), doc_ids, qrels, query_ids
        )

    for spec in ["minilm"] + ([] if args.no_int8 else ["minilm:int8"]):
        embedder = get_embedder(spec)
        assert isinstance(embedder, OnnxEmbedder)
        started = time.perf_counter()
        embedder.warm_up()
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        vectors = embedder.embed_documents(texts)
        results.append((f"lamina {spec}", load_s, time.perf_counter() - started, vectors))
        if full:
            ndcg[f"lamina {spec}"] = ndcg_at_10(
                vectors, embedder.embed_documents(query_texts), doc_ids, qrels, query_ids
            )

    head = f"{'embedder':30} {'load s':>7} {'embed s':>8} {'texts/s':>8} {'ratio':>6}"
    head += f" {'cos mean':>9} {'cos min':>8}"
    if full:
        head += f" {'nDCG@10':>8}"
    print(head)
    print("-" * len(head))
    for label, load_s, seconds, vectors in results:
        cos = (vectors * reference).sum(axis=1) / (
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
        )
        line = (
            f"{label:30} {load_s:7.2f} {seconds:8.1f} {len(texts) / seconds:8.1f} "
            f"{seconds / st_s:6.3f} {cos.mean():9.6f} {cos.min():8.6f}"
        )
        if full:
            line += f" {ndcg[label]:8.4f}"
        print(line)


if __name__ == "__main__":
    main()
