"""The wire format of Lamina's own routes: ask, documents, jobs, collections, feedback, agent.

(The OpenAI-compatible routes keep theirs in :mod:`lamina.server.schemas`.) Request models
refuse unknown fields and lone surrogates (400 naming where); response models document exactly
what the routes return, and a test checks the OpenAPI schema against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lamina.server.jobs import Job
from lamina.server.schemas import _Request

__all__ = [
    "AgentRequest",
    "AgentResult",
    "AskRequest",
    "AskResponse",
    "CollectionList",
    "CollectionOut",
    "DocumentList",
    "DocumentOut",
    "DocumentText",
    "ErrorBody",
    "FeedbackOut",
    "FeedbackRequest",
    "JobList",
    "Me",
    "ShareRequest",
]

Question = Annotated[str, Field(min_length=1, max_length=4000)]


class _In(_Request):
    """A request body of Lamina's own routes: the OpenAI routes' checks, no unknown fields."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ---------------------------------------------------------------------------------


class ErrorDetail(_Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(_Out):
    """Every error, in OpenAI's shape."""

    error: ErrorDetail


# -- ask ------------------------------------------------------------------------------------


class AskRequest(_In):
    question: Question
    collection: str | None = Field(
        None, max_length=200, description="One collection; empty: every one you may read."
    )
    strategy: Literal["extract", "select", "generate"] = "extract"
    model: str = Field("", max_length=500, description="A served model id; empty: the default.")
    history: list[Question] = Field(
        default_factory=list,
        max_length=16,
        description="The earlier answers' `query` values of a conversation, oldest first: a "
        "follow-up is rewritten with them before searching.",
    )
    stream: bool = Field(False, description="Server-sent events: tokens, then the answer.")


class CitationOut(_Out):
    n: int
    source: str
    page: int | None
    start: int
    end: int
    quote: str
    verified: bool
    document_id: str


class SourceOut(_Out):
    n: int
    source: str
    title: str | None
    page: int | None
    start: int
    end: int
    score: float
    document_id: str


class UsageOut(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None


class AskResponse(_Out):
    """What `lamina ask --json` prints, field for field."""

    answer: str
    found: bool
    citations: list[CitationOut]
    usage: UsageOut
    timings_ms: dict[str, float]
    query: str = Field(description="What was searched (a follow-up rewritten).")
    strategy: str = Field(description="extract, select, generate, extract-fallback, not-found")
    sources: list[SourceOut] = Field(
        description="The passages shown to the model; when not found, the closest ones."
    )
    run_id: str | None = Field(description="Rate it: POST /v1/feedback (null: not recorded).")


# -- documents, collections, jobs -----------------------------------------------------------


class DocumentOut(_Out):
    id: str
    object: Literal["document"] = "document"
    name: str
    collection: str
    own: bool = Field(description="False for a collection another key shared with you.")
    size: int | None
    added: float | None


class DocumentList(_Out):
    object: Literal["list"] = "list"
    data: list[DocumentOut]


class DocumentText(_Out):
    document_id: str
    name: str
    collection: str
    length: int = Field(description="Characters in the whole document text.")
    start: int
    end: int
    page: int | None = Field(description="The PDF page `start` lies on.")
    text: str = Field(description="text[start:end], the cited span.")
    before: str
    after: str


class Deleted(_Out):
    id: str
    object: Literal["document"] = "document"
    deleted: bool


class CollectionOut(_Out):
    name: str = Field(description="How you name it in `collection` fields.")
    object: Literal["collection"] = "collection"
    own: bool
    shared: bool
    documents: int
    chunks: int


class CollectionList(_Out):
    object: Literal["list"] = "list"
    data: list[CollectionOut]


class ShareRequest(_In):
    shared: bool = True


class JobList(_Out):
    object: Literal["list"] = "list"
    data: list[Job]


# -- feedback -------------------------------------------------------------------------------


class FeedbackRequest(_In):
    run_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"]
    fix: str | None = Field(
        None, min_length=1, max_length=8000, description="With down: the right answer."
    )


class FeedbackOut(_Out):
    run_id: str
    object: Literal["feedback"] = "feedback"
    rating: Literal["up", "down"]
    fix: str | None


# -- agent ----------------------------------------------------------------------------------


class AgentRequest(_In):
    task: Question
    model: str = Field("", max_length=500, description="A served model id; empty: the default.")
    tools: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, max_length=16, description="Some of the enabled tools; empty: all of them."
    )
    collection: str | None = Field(None, max_length=200, description="For search_documents.")
    max_steps: int | None = Field(None, ge=1, le=32)
    stream: bool = Field(True, description="Server-sent events: each step, then the result.")


class StepOut(_Out):
    index: int
    kind: str
    tool: str | None
    arguments: dict[str, Any] | str | None
    observation: str
    ok: bool
    prompt_tokens: int
    completion_tokens: int
    model_ms: float
    tool_ms: float


class AgentUsage(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float | None
    model_calls: int
    seconds: float


class AgentResult(_Out):
    """What `lamina agent --json` prints, with every step and the run id."""

    answer: str | None
    stop_reason: str
    detail: str
    steps: list[dict[str, Any]]
    usage: AgentUsage
    trace_id: str | None
    run_id: str | None


# -- the caller -----------------------------------------------------------------------------


class Me(_Out):
    object: Literal["session"] = "session"
    key: str | None = Field(description="The API key's name (null: no keys, loopback mode).")
    admin: bool
    auth: bool = Field(description="Whether this server requires API keys.")
    models: list[str] = Field(description="Chat model ids to use in `model`, default first.")
    strategies: list[str]
    agent_tools: list[str]
    upload_limit_bytes: int
    max_upload_files: int
