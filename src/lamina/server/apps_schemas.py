"""The wire format of ``/v1/apps/``: summarize, classify, extract, email reply/draft, research.

Each response is what the ``lamina`` command of the same name prints with ``--json``, plus the
served ``model`` id; sources are the uploaded files' names (never server paths), each with the
``document_id`` that ``GET /v1/documents/{id}/text`` reads. Requests refuse unknown fields and
lone surrogates, like every other route of Lamina's own (:mod:`lamina.server.wire`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from lamina.apps.classify import MAX_LABEL_CHARS, MAX_LABELS
from lamina.server.wire import CitationOut, UsageOut, _In, _Out

__all__ = [
    "ClassifyRequest",
    "ClassifyResponse",
    "DraftRequest",
    "EmailResponse",
    "ExtractRequest",
    "ExtractResponse",
    "ReplyRequest",
    "ResearchRequest",
    "ResearchResponse",
    "SummarizeRequest",
    "SummarizeResponse",
]

#: The text an app reads in one request. A summary reads any size (map-reduce), bounded here
#: by what a request can be expected to finish within ``server.request_timeout_s`` on a CPU;
#: the rest work in one model call and take what a small model's window holds, and some more.
MAX_SUMMARY_CHARS = 400_000
MAX_TEXT_CHARS = 20_000
MAX_EXAMPLES = 200

ModelField = Annotated[
    str, Field(max_length=500, description="A served model id; empty: the default.")
]
Label = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_CHARS)]
Collection = Annotated[
    str | None,
    Field(max_length=200, description="One collection; empty: every one you may read."),
]
Tone = Literal["neutral", "friendly", "formal", "firm"]
Length = Literal["short", "medium", "long"]


# -- summarize ------------------------------------------------------------------------------


class SummarizeRequest(_In):
    text: str = Field(min_length=1, max_length=MAX_SUMMARY_CHARS)
    title: str = Field(
        "", max_length=200, description="The document's name, shown as each section's source."
    )
    length: Length = Field("medium", description="short (3 points), medium (6) or long (10).")
    style: Literal["bullets", "prose"] = "bullets"
    model: ModelField = ""


class SectionOut(_Out):
    n: int
    source: str
    heading: str
    page: int | None
    start: int = Field(description="Character offsets into the text sent.")
    end: int


class PointOut(_Out):
    text: str
    sections: list[SectionOut]


class SummarizeResponse(_Out):
    text: str = Field(description="The summary, each point marked with its sections' [n].")
    points: list[PointOut]
    sections: list[SectionOut]
    read: int = Field(description="Sections read (one model call each).")
    rounds: int = Field(description="Reduce rounds.")
    usage: UsageOut
    trace_id: str | None
    model: str


# -- classify -------------------------------------------------------------------------------


class ExampleIn(_In):
    text: str = Field(min_length=1, max_length=2000)
    label: Label


class ClassifyRequest(_In):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    labels: list[Label] = Field(
        default_factory=list,
        max_length=MAX_LABELS,
        description="2 to 50 labels; empty: the examples' labels.",
    )
    examples: list[ExampleIn] = Field(
        default_factory=list, max_length=MAX_EXAMPLES, description="Labelled examples."
    )
    method: Literal["zero-shot", "few-shot", "knn"] | None = Field(
        None, description="Default: few-shot with examples, else zero-shot. knn needs no model."
    )
    k: int = Field(4, ge=1, le=16, description="Examples shown (few-shot) or voting (knn).")
    samples: int = Field(1, ge=1, le=5, description="Chain-of-thought samples; more than 1 votes.")
    calibrate: bool | None = Field(
        None,
        description="Divide by the model's prior for content-free inputs (N/A); "
        "null: for zero-shot only.",
    )
    model: ModelField = ""


class ClassifyResponse(_Out):
    label: str
    confidence: float | None = Field(description="0..1; null when the backend gives none.")
    scores: dict[str, float] = Field(description="Each label's probability where known.")
    method: Literal["zero-shot", "few-shot", "knn"]
    examples: list[str] = Field(description="The examples shown or voting, most useful first.")
    calibrated: bool = Field(description="Scores divided by the model's content-free prior.")
    prior: dict[str, float] = Field(description="That prior (empty when not calibrated).")
    usage: UsageOut
    model: str | None = Field(description="The served model; null for knn (no model).")


# -- extract --------------------------------------------------------------------------------


class ExtractRequest(_In):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    json_schema: dict[str, Any] = Field(
        alias="schema", description="A JSON Schema object: the fields to extract."
    )
    instructions: str = Field("", max_length=2000)
    model: ModelField = ""


class ExtractResponse(_Out):
    data: Any = Field(description="JSON that validates against the schema.")
    attempts: int = Field(description="Model calls (2 when the first reply did not validate).")
    usage: UsageOut
    model: str


# -- email ----------------------------------------------------------------------------------


class _EmailOptions(_In):
    tone: Tone = "neutral"
    length: Length = "short"
    signature: str = Field("", max_length=200)
    use_documents: bool = Field(
        False, description="Take facts from your documents, with citations."
    )
    collection: Collection = None
    model: ModelField = ""


class ReplyRequest(_EmailOptions):
    email: str = Field(
        min_length=1, max_length=MAX_TEXT_CHARS, description="The email; headers optional."
    )
    instructions: str = Field("", max_length=2000, description="What the reply should say.")


class DraftRequest(_EmailOptions):
    brief: str = Field(min_length=1, max_length=4000, description="What the email should do.")
    to: str = Field("", max_length=200)


class FactOut(_Out):
    n: int
    question: str
    text: str
    citation: CitationOut


class EmailResponse(_Out):
    subject: str
    body: str
    citations: list[FactOut] = Field(description="The facts the body cites.")
    facts: list[FactOut] = Field(description="Every fact offered to the model.")
    usage: UsageOut
    model: str


# -- research -------------------------------------------------------------------------------


class ResearchRequest(_In):
    question: str = Field(min_length=1, max_length=4000)
    collection: Collection = None
    questions: int = Field(3, ge=0, le=6, description="Sub-questions to plan.")
    strategy: Literal["extract", "select", "generate"] = "extract"
    model: ModelField = ""


class FindingOut(_Out):
    question: str
    text: str
    sources: list[int]


class ResearchResponse(_Out):
    question: str
    findings: list[FindingOut]
    open_questions: list[str]
    sources: list[CitationOut]
    usage: UsageOut
    trace_id: str | None
    model: str
