"""Ranking metrics, as BEIR / pytrec_eval compute them (linear gain for nDCG).

``run`` maps a query id to ``{doc id: score}``; ``qrels`` maps a query id to
``{doc id: relevance}`` (0 = not relevant). Queries without any relevant document are left
out, as BEIR does.

>>> qrels = {"q": {"a": 1, "c": 1}}
>>> run = {"q": {"a": 0.9, "b": 0.8, "c": 0.7}}
>>> round(ndcg_at_k(run, qrels, 10), 4), recall_at_k(run, qrels, 2), mrr_at_k(run, qrels, 10)
(0.9197, 0.5, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["mrr_at_k", "ndcg_at_k", "recall_at_k"]

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def _ranked(scores: Mapping[str, float], k: int) -> list[str]:
    # Ties broken by doc id, descending, like trec_eval.
    return [d for d, _ in sorted(scores.items(), key=lambda x: (-x[1], x[0]), reverse=False)][:k]


def _judged(qrels: Qrels) -> dict[str, dict[str, int]]:
    return {q: {d: r for d, r in rel.items() if r > 0} for q, rel in qrels.items()}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def ndcg_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    values = []
    for query, relevant in _judged(qrels).items():
        if not relevant:
            continue
        ranked = _ranked(run.get(query, {}), k)
        dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked))
        ideal = sorted(relevant.values(), reverse=True)[:k]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        values.append(dcg / idcg)
    return _mean(values)


def recall_at_k(run: Run, qrels: Qrels, k: int = 100) -> float:
    values = []
    for query, relevant in _judged(qrels).items():
        if not relevant:
            continue
        ranked = set(_ranked(run.get(query, {}), k))
        values.append(len(ranked & relevant.keys()) / len(relevant))
    return _mean(values)


def mrr_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    values = []
    for query, relevant in _judged(qrels).items():
        if not relevant:
            continue
        ranked = _ranked(run.get(query, {}), k)
        values.append(next((1.0 / (i + 1) for i, d in enumerate(ranked) if d in relevant), 0.0))
    return _mean(values)
