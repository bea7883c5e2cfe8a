"""What a grounded answer is made of: citations that point at exact spans of sources.

Everything a user sees traces back to ``source[start:end]`` of a document's extracted text.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from lamina.types import Usage

__all__ = ["Answer", "Citation", "LeftOut", "SourceRef"]

NOT_FOUND = "Not found in the documents."


class Citation(BaseModel):
    """``[n]`` in the answer, resolved to ``quote == text[start:end]`` of ``source``."""

    n: int
    source: str
    page: int | None = None
    start: int
    end: int
    quote: str
    verified: bool = False
    #: How well the cited span supports the sentence that cites it (0..1).
    support: float = 0.0


class SourceRef(BaseModel):
    """A passage that was shown to the model, numbered as in the prompt."""

    n: int
    source: str
    title: str | None = None
    page: int | None = None
    start: int
    end: int
    score: float


class LeftOut(BaseModel):
    """A retrieved passage that did not make it into the prompt, and why."""

    source: str
    page: int | None = None
    start: int
    end: int
    score: float
    reason: str  # "duplicate" | "budget"


class Answer(BaseModel):
    """The structured result of :meth:`lamina.rag.RagPipeline.ask`."""

    question: str
    #: The standalone query actually searched (differs from ``question`` for follow-ups).
    query: str
    answer: str
    found: bool
    citations: list[Citation] = Field(default_factory=list)
    sources: list[SourceRef] = Field(default_factory=list)
    left_out: list[LeftOut] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    #: Relevance of the best sentence found (0..1); under the threshold means "not found".
    relevance: float = 0.0
    #: The answering strategy that produced ``answer`` (after any retry or fallback).
    strategy: str = ""
    retried: bool = False
    #: Sentences of a generated answer dropped because their citation did not support them.
    dropped: list[str] = Field(default_factory=list)

    def public(self) -> dict[str, object]:
        """The documented JSON shape of ``lamina ask --json``."""
        return {
            "answer": self.answer,
            "found": self.found,
            "citations": [
                c.model_dump(include={"n", "source", "page", "start", "end", "quote", "verified"})
                for c in self.citations
            ],
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
                "cost_usd": self.usage.cost_usd,
            },
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }
