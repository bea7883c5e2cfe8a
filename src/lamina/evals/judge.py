"""Judged RAG metrics with Ragas' definitions, asked of any chat model.

The four metrics of Ragas 0.2 (``ragas.metrics``), each a number in 0..1:

- **faithfulness**: the answer is broken into standalone statements; the judge says for each
  whether it can be inferred from the retrieved contexts. Score = supported / statements
  (repeated statements count once).
- **answer_relevancy**: the judge writes the question the answer answers and says whether the
  answer is noncommittal. Score = cosine(question, generated question) with the embedder,
  0 when noncommittal. (Ragas asks ``strictness=3`` times at temperature 1e-8, i.e. the same
  question three times; Lamina asks once at temperature 0.)
- **context_precision** (with reference): for each retrieved context in rank order the judge
  says whether it was useful to arrive at the reference answer. Score = average precision
  of those verdicts: ``sum_k precision@k * v_k / sum_k v_k``. (Ragas asks once per context;
  Lamina asks for all the verdicts in one reply, a sixth of the calls for six passages.)
- **context_recall**: for each sentence of the reference the judge says whether it can be
  attributed to the contexts. Score = attributed / sentences. (Ragas lets the model split the
  reference into sentences; Lamina splits it itself so the verdict count is fixed.)

Prompts are the templates ``evals/*`` of :mod:`lamina.prompts` (data, rendered strictly);
replies are constrained by a JSON schema (``json_schema=``: a grammar for local models,
``response_format`` / a forced tool for API models) with exactly one verdict per statement.
A reply the judge got wrong anyway (unparseable, cut off) is recorded as that metric's error
for that item, and the metric is left out of the means; errors of our own code raise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lamina.errors import IncompleteOutputError
from lamina.models.base import ChatModel
from lamina.models.embeddings import TextEmbedder
from lamina.prompts import render

__all__ = ["METRICS", "Judge", "JudgeSample", "Judged", "average_precision"]

METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")

#: The bundled model as judge: what it can and cannot do, said wherever its numbers appear.
SMALL_JUDGE_NOTE = (
    "The judge is the bundled SmolLM2-135M: the JSON is always well-formed (grammar-"
    "constrained), but a 135M model cannot reliably decide entailment, so judged numbers are "
    "rough; use --judge openai:MODEL or anthropic:MODEL for judgments you can rely on."
)

_REASON = {"type": "string", "maxLength": 100}
_BIT = {"type": "integer", "enum": [0, 1]}


def average_precision(verdicts: Sequence[int]) -> float:
    """Ragas' context precision of verdicts in rank order.

    >>> average_precision([1, 0, 1]), average_precision([0, 1]), average_precision([0, 0])
    (0.8333333333333333, 0.5, 0.0)
    """
    hits, total = 0, 0.0
    for k, verdict in enumerate(verdicts, start=1):
        if verdict:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0  # Ragas: the same, with 1e-10 against 0/0


@dataclass
class JudgeSample:
    """What the judge sees of one answered question (Ragas' SingleTurnSample)."""

    question: str
    answer: str
    contexts: list[str]
    reference: str | None = None


@dataclass
class Judged:
    """One item's judged metrics: values (None = not computed), errors, and the evidence."""

    values: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class JudgeReplyError(Exception):
    """The judge's reply did not have the shape asked for: a model-caused failure."""


class Judge:
    """Scores samples with a chat model as judge and an embedder for answer relevancy."""

    def __init__(
        self,
        model: ChatModel,
        embedder: TextEmbedder,
        *,
        max_statements: int = 8,
        max_contexts: int = 6,
    ) -> None:
        self.model = model
        self.embedder = embedder
        self.max_statements = max_statements
        self.max_contexts = max_contexts

    @property
    def name(self) -> str:
        return self.model.name

    def _ask(self, template: str, schema: dict[str, Any], max_tokens: int, **variables: Any) -> Any:
        try:
            reply = self.model.chat(
                render(template, **variables),
                temperature=0.0,
                max_tokens=max_tokens,
                json_schema=schema,
            )
        except IncompleteOutputError as exc:
            raise JudgeReplyError(f"reply cut off at max_tokens={exc.max_tokens}") from None
        try:
            return json.loads(reply.text)
        except json.JSONDecodeError as exc:
            raise JudgeReplyError(f"reply is not JSON ({exc.msg}): {reply.text[:120]!r}") from None

    @staticmethod
    def _bits(reply: Any, key: str, field_name: str, n: int) -> list[int]:
        rows = reply.get(key) if isinstance(reply, dict) else None
        if not isinstance(rows, list) or len(rows) != n:
            raise JudgeReplyError(f"expected {n} {key}, got {json.dumps(reply)[:160]}")
        bits = [r.get(field_name) if isinstance(r, dict) else None for r in rows]
        if not all(b in (0, 1) for b in bits):
            raise JudgeReplyError(f"a {field_name} is not 0 or 1: {json.dumps(reply)[:160]}")
        return [int(b) for b in bits]  # type: ignore[arg-type]

    def _verdicts(
        self, template: str, key: str, field_name: str, n: int, **variables: Any
    ) -> list[int]:
        item = {
            "type": "object",
            "properties": {"reason": _REASON, field_name: _BIT},
            "required": ["reason", field_name],
            "additionalProperties": False,
        }
        schema = {
            "type": "object",
            "properties": {key: {"type": "array", "items": item, "minItems": n, "maxItems": n}},
            "required": [key],
            "additionalProperties": False,
        }
        reply = self._ask(template, schema, max_tokens=64 * n + 32, **variables)
        return self._bits(reply, key, field_name, n)

    # -- the four metrics ----------------------------------------------------------------------

    def faithfulness(self, sample: JudgeSample, out: Judged) -> float | None:
        schema = {
            "type": "object",
            "properties": {
                "statements": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 200},
                    "minItems": 1,
                    "maxItems": self.max_statements,
                }
            },
            "required": ["statements"],
            "additionalProperties": False,
        }
        reply = self._ask(
            "evals/statements",
            schema,
            max_tokens=64 * self.max_statements + 32,
            question=sample.question,
            answer=sample.answer,
        )
        statements = reply.get("statements") if isinstance(reply, dict) else None
        if not isinstance(statements, list) or not all(isinstance(s, str) for s in statements):
            raise JudgeReplyError(f"no list of statements: {json.dumps(reply)[:160]}")
        # A small judge repeats itself ("GUF", "GUF", ...): a statement counts once.
        statements = list(dict.fromkeys(s.strip() for s in statements if s.strip()))
        if not statements:
            return None  # Ragas: NaN when the answer has no statements
        verdicts = self._verdicts(
            "evals/nli",
            "verdicts",
            "verdict",
            len(statements),
            context="\n".join(sample.contexts),
            statements=statements,
        )
        out.details["statements"] = [
            {"statement": s, "verdict": v} for s, v in zip(statements, verdicts, strict=True)
        ]
        return sum(verdicts) / len(verdicts)

    def answer_relevancy(self, sample: JudgeSample, out: Judged) -> float | None:
        schema = {
            "type": "object",
            "properties": {
                "question": {"type": "string", "maxLength": 300},
                "noncommittal": _BIT,
            },
            "required": ["question", "noncommittal"],
            "additionalProperties": False,
        }
        reply = self._ask("evals/question", schema, max_tokens=160, answer=sample.answer)
        question = reply.get("question") if isinstance(reply, dict) else None
        noncommittal = reply.get("noncommittal") if isinstance(reply, dict) else None
        if not isinstance(question, str) or noncommittal not in (0, 1):
            raise JudgeReplyError(f"no question/noncommittal: {json.dumps(reply)[:160]}")
        out.details["generated_question"] = question
        out.details["noncommittal"] = noncommittal
        if not question.strip():
            return None  # Ragas: NaN when no question came back
        a = np.asarray(self.embedder.embed_query(sample.question), dtype=np.float64)
        b = np.asarray(self.embedder.embed_query(question), dtype=np.float64)
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = float(a @ b) / norm if norm else 0.0
        return cosine * (0 if noncommittal else 1)

    def context_precision(self, sample: JudgeSample, out: Judged) -> float | None:
        if sample.reference is None or not sample.contexts:
            return None
        contexts = sample.contexts[: self.max_contexts]
        verdicts = self._verdicts(
            "evals/context_precision",
            "verdicts",
            "verdict",
            len(contexts),
            question=sample.question,
            answer=sample.reference,
            contexts=contexts,
        )
        out.details["context_verdicts"] = verdicts
        return average_precision(verdicts)

    def context_recall(self, sample: JudgeSample, out: Judged) -> float | None:
        from lamina.retrieval.sentences import split_sentences

        if sample.reference is None or not sample.contexts:
            return None
        reference = sample.reference
        sentences = [reference[a:b].strip() for a, b in split_sentences(reference)]
        sentences = [s for s in sentences if s][: self.max_statements] or [reference.strip()]
        verdicts = self._verdicts(
            "evals/context_recall",
            "classifications",
            "attributed",
            len(sentences),
            question=sample.question,
            context="\n".join(sample.contexts),
            sentences=sentences,
        )
        out.details["reference_sentences"] = [
            {"sentence": s, "attributed": v} for s, v in zip(sentences, verdicts, strict=True)
        ]
        return sum(verdicts) / len(verdicts)

    def score(self, sample: JudgeSample, metrics: Sequence[str] = METRICS) -> Judged:
        """All ``metrics`` for one sample; a model-caused failure is recorded, not raised."""
        out = Judged()
        for metric in metrics:
            try:
                value = getattr(self, metric)(sample, out)
            except JudgeReplyError as exc:
                out.values[metric] = None
                out.errors[metric] = str(exc)
                continue
            out.values[metric] = None if value is None or math.isnan(value) else float(value)
        return out
