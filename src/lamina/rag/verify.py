"""Check that a cited span supports the sentence that cites it.

Two cheap signals that work without a strong model, and an optional judge:

- ``lexical``: share of the claim's content terms found in the span (a quote scores 1.0);
- ``dense``: cosine similarity of claim and span embeddings (MiniLM by default);
- ``judge``: a chat model asked yes/no, only when one is configured (a 135M model is no judge).

A claim is supported when ``lexical >= lexical_min``, or when ``dense >= dense_min`` and
``lexical >= lexical_floor`` (a paraphrase must still share some words with its source).
The thresholds are set by principle (most of a claim's words must come from its source), not
fitted: the sample QA set has no labelled paraphrases to fit them on.

>>> Verifier().check("LoRA freezes the weights.", "LoRA freezes the pretrained weights.").supported
True
>>> Verifier().check("LoRA was invented in 1990.", "LoRA freezes the pretrained weights.").supported
False
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from lamina.models.base import ChatModel
from lamina.models.embeddings.base import TextEmbedder
from lamina.prompts import render
from lamina.rag.lexical import coverage, terms

__all__ = ["Support", "Verifier"]

_JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"supported": {"enum": ["yes", "no"]}},
    "required": ["supported"],
}


@dataclass(frozen=True)
class Support:
    supported: bool
    score: float
    lexical: float
    dense: float | None = None


class Verifier:
    def __init__(
        self,
        embedder: TextEmbedder | None = None,
        *,
        judge: ChatModel | None = None,
        lexical_min: float = 0.6,
        dense_min: float = 0.6,
        lexical_floor: float = 0.3,
    ) -> None:
        self.embedder = embedder
        self.judge = judge
        self.lexical_min = lexical_min
        self.dense_min = dense_min
        self.lexical_floor = lexical_floor

    def check(self, claim: str, span: str) -> Support:
        claim_terms = terms(claim)
        lexical = coverage(claim_terms, span) if claim_terms else 1.0
        dense: float | None = None
        if self.embedder is not None:
            vectors = self.embedder.embed_documents(
                [" ".join(claim.split()), " ".join(span.split())]
            )
            dense = float(np.dot(vectors[0], vectors[1]))
        supported = lexical >= self.lexical_min or (
            dense is not None and dense >= self.dense_min and lexical >= self.lexical_floor
        )
        if self.judge is not None and lexical >= self.lexical_floor:
            supported = self._judge(claim, span)
        score = lexical if dense is None else max(lexical, (lexical + dense) / 2)
        return Support(supported, score, lexical, dense)

    def _judge(self, claim: str, span: str) -> bool:
        """The judge's verdict; a reply that does not parse (a model-caused error) is a no."""
        assert self.judge is not None
        prompt = render("rag/verify", claim=claim, span=span)
        reply = self.judge.chat(prompt, temperature=0.0, max_tokens=16, json_schema=_JUDGE_SCHEMA)
        try:
            verdict = json.loads(reply.text)
        except ValueError:
            return False
        return isinstance(verdict, dict) and verdict.get("supported") == "yes"
