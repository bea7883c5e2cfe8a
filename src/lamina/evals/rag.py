"""Evaluate grounded answers on a QA set: containment, token F1, citations, not-found, speed,
and (with a judge) Ragas' judged metrics, see :mod:`lamina.evals.judge`.

A dataset is JSON lines ``{"question": str, "answers": [str, ...], "source": str | null}``;
``source`` null marks a question the documents cannot answer.

Judged metrics are computed where Ragas' definitions apply: faithfulness and answer relevancy
for answers given (not "not found"), context precision and recall for answerable questions
(the first of ``answers`` is the reference). The contexts are the passages the pipeline put
in the prompt, in rank order, read back from the index.

>>> round(token_f1("the GGML format [1]", "GGML"), 3)
0.667
>>> same_source("/data/corpus/lora.pdf", "lora.pdf"), same_source("a/lora.pdf", "b/lora.md")
(True, False)
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from lamina.errors import InvalidRequestError
from lamina.evals.judge import METRICS, Judge, JudgeSample
from lamina.evals.run import EvalRun, RunMeta
from lamina.rag.answer import Answer, SourceRef
from lamina.rag.citations import parse_claims, strip_markers
from lamina.rag.pipeline import RagPipeline
from lamina.retrieval.index import Index
from lamina.telemetry import spans

__all__ = [
    "QAItem",
    "RagEvalResult",
    "evaluate",
    "load_dataset",
    "passage_texts",
    "same_source",
    "to_run",
    "token_f1",
]


class QAItem(BaseModel):
    question: str
    answers: list[str] = []
    source: str | None = None

    @property
    def answerable(self) -> bool:
        return self.source is not None


class ItemResult(BaseModel):
    id: int = 0
    question: str
    answerable: bool
    found: bool
    answer: str
    contains: bool
    f1: float
    citation_ok: bool | None
    faithful: float | None
    latency_ms: float
    relevance: float
    cited: list[str]
    reference: str | None = None
    contexts: list[str] = Field(default_factory=list)
    #: Ragas' metrics for this item (None: not applicable, or the judge's reply failed).
    judged: dict[str, float | None] = Field(default_factory=dict)
    #: metric -> why the judge's reply could not be used (model-caused; the run goes on).
    judge_errors: dict[str, str] = Field(default_factory=dict)
    judge_details: dict[str, Any] = Field(default_factory=dict)


class RagEvalResult(BaseModel):
    n: int
    answerable: int
    unanswerable: int
    containment: float
    token_f1: float
    citation_accuracy: float
    answered: float
    not_found: float
    faithfulness: float
    latency_p50_ms: float
    latency_p95_ms: float
    #: Mean of each judged metric over the items it applies to, the judge, failure counts.
    judged: dict[str, Any] = Field(default_factory=dict)
    items: list[ItemResult]

    def summary(self) -> dict[str, Any]:
        return self.model_dump(exclude={"items"})


def load_dataset(path: Path) -> list[QAItem]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(QAItem.model_validate_json(line))
        except ValueError as exc:
            raise InvalidRequestError(
                f"{path}:{number} is not a QA record ({exc.__class__.__name__}). Each line must "
                f'be {{"question": str, "answers": [str], "source": str | null}}.'
            ) from None
    if not items:
        raise InvalidRequestError(f"The dataset {str(path)!r} holds no questions.")
    return items


def _normal(text: str) -> str:
    text = text.lower()
    text = "".join(" " if ch in string.punctuation and ch not in "#_" else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _contains(answer: str, reference: str) -> bool:
    plain = " ".join(answer.lower().split())
    return " ".join(reference.lower().split()) in plain or _normal(reference) in _normal(answer)


def token_f1(answer: str, reference: str) -> float:
    """SQuAD token F1 of ``answer`` (citation markers removed) against ``reference``."""
    a = _normal(strip_markers(answer)).split()
    r = _normal(reference).split()
    common = sum((Counter(a) & Counter(r)).values())
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def same_source(cited: str, expected: str) -> bool:
    """Whether the cited document is the expected one: equal, or one a path suffix of the other."""
    a = Path(cited.replace("\\", "/")).parts
    b = Path(expected.replace("\\", "/")).parts
    n = min(len(a), len(b))
    return n > 0 and a[-n:] == b[-n:]


class _Documents:
    """Passage text by (source, start, end), read from the index's documents once each."""

    def __init__(self, index: Index) -> None:
        self.store = index.store
        self._where: dict[str, tuple[str, str]] | None = None
        self._texts: dict[str, str] = {}

    def text(self, ref: SourceRef) -> str:
        if self._where is None:
            self._where = {}
            for collection in self.store.collections():
                for source, (doc_id, _) in self.store.sources(collection).items():
                    self._where.setdefault(source, (collection, doc_id))
        if ref.source not in self._texts:
            where = self._where.get(ref.source)
            found = self.store.document_text(*where) if where else None
            self._texts[ref.source] = found or ""
        return self._texts[ref.source][ref.start : ref.end]


def passage_texts(index: Index, answer: Answer) -> list[str]:
    """The text of each passage the answer's prompt held, in rank order."""
    documents = _Documents(index)
    return [documents.text(ref) for ref in sorted(answer.sources, key=lambda r: r.n)]


def _score(item: QAItem, answer: Answer) -> ItemResult:
    cited = list(dict.fromkeys(c.source for c in answer.citations))
    contains = answer.found and any(_contains(answer.answer, r) for r in item.answers)
    f1 = max((token_f1(answer.answer, r) for r in item.answers), default=0.0)
    citation_ok = None
    if item.source is not None and answer.found:
        citation_ok = bool(cited) and all(same_source(c, item.source) for c in cited)
    faithful = None
    if answer.found:
        claims = parse_claims(answer.answer)
        verified = {c.n for c in answer.citations if c.verified}
        ok = sum(1 for c in claims if c.numbers and set(c.numbers) <= verified)
        faithful = ok / len(claims) if claims else 0.0
    return ItemResult(
        question=item.question,
        answerable=item.answerable,
        found=answer.found,
        answer=answer.answer,
        contains=contains,
        f1=f1 if answer.found else 0.0,
        citation_ok=citation_ok,
        faithful=faithful,
        latency_ms=answer.timings_ms.get("total", 0.0),
        relevance=answer.relevance,
        cited=cited,
    )


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _judge(judge: Judge, result: ItemResult) -> None:
    metrics = [
        m
        for m in METRICS
        if (m in ("faithfulness", "answer_relevancy") and result.found)
        or (m in ("context_precision", "context_recall") and result.reference is not None)
    ]
    sample = JudgeSample(
        question=result.question,
        answer=strip_markers(result.answer),
        contexts=[" ".join(c.split()) for c in result.contexts],
        reference=result.reference,
    )
    judged = judge.score(sample, metrics)
    result.judged = {m: judged.values.get(m) for m in METRICS}
    result.judge_errors = judged.errors
    result.judge_details = judged.details


def _judged_summary(judge: Judge, results: Sequence[ItemResult]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for metric in METRICS:
        values = [v for r in results if (v := r.judged.get(metric)) is not None]
        summary[metric] = _mean(values) if values else None
        summary[f"{metric}_n"] = len(values)
    summary["errors"] = sum(len(r.judge_errors) for r in results)
    summary["judge"] = judge.name
    return summary


def evaluate(
    pipeline: RagPipeline,
    items: Sequence[QAItem],
    progress: Callable[[int, ItemResult], None] | None = None,
    *,
    judge: Judge | None = None,
) -> RagEvalResult:
    """Ask every question of ``items`` and score the answers; ``judge`` adds Ragas' metrics.
    One ``eval.rag`` span holds every question's ``rag.ask`` and the judge's calls."""
    settings = getattr(pipeline.index, "settings", None)
    with spans.span("eval.rag", "CHAIN", settings=settings, items=len(items)):
        return _evaluate(pipeline, items, progress, judge)


def _evaluate(
    pipeline: RagPipeline,
    items: Sequence[QAItem],
    progress: Callable[[int, ItemResult], None] | None,
    judge: Judge | None,
) -> RagEvalResult:
    documents = _Documents(pipeline.index)
    results = []
    for i, item in enumerate(items, start=1):
        answer = pipeline.ask(item.question)
        result = _score(item, answer)
        result.id = i
        result.reference = item.answers[0] if item.answerable and item.answers else None
        result.contexts = [documents.text(r) for r in sorted(answer.sources, key=lambda r: r.n)]
        if judge is not None:
            _judge(judge, result)
        results.append(result)
        if progress:
            progress(i, result)
    ans = [r for r in results if r.answerable]
    una = [r for r in results if not r.answerable]
    answered = [r for r in ans if r.found]
    latencies = [r.latency_ms for r in results]
    return RagEvalResult(
        n=len(results),
        answerable=len(ans),
        unanswerable=len(una),
        containment=_mean([float(r.contains) for r in ans]),
        token_f1=_mean([r.f1 for r in ans]),
        citation_accuracy=_mean([float(bool(r.citation_ok)) for r in answered]),
        answered=_mean([float(r.found) for r in ans]),
        not_found=_mean([float(not r.found) for r in una]),
        faithfulness=_mean([r.faithful for r in results if r.faithful is not None]),
        latency_p50_ms=float(np.percentile(latencies, 50)) if latencies else 0.0,
        latency_p95_ms=float(np.percentile(latencies, 95)) if latencies else 0.0,
        judged=_judged_summary(judge, results) if judge is not None else {},
        items=results,
    )


def to_run(result: RagEvalResult) -> EvalRun:
    """The result as an :class:`EvalRun` (its JSON keeps the documented keys)."""
    items = []
    for r in result.items:
        item = r.model_dump(exclude={"judged", "judge_details"})
        # One number to rank items by: F1 when there is a reference, else 1 for "not found".
        item["score"] = r.f1 if r.answerable else float(not r.found)
        item["judged"] = {k: v for k, v in r.judged.items() if v is not None}
        item["judge_details"] = r.judge_details
        items.append(item)
    summary = result.summary()
    if not summary["judged"]:
        del summary["judged"]
    return EvalRun(kind="rag", summary=summary, items=items, primary="score", meta=RunMeta())


def dump(result: RagEvalResult) -> str:
    return json.dumps(result.model_dump(), indent=2)
