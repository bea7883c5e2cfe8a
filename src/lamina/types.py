"""The data that flows between layers: messages in, completions and deltas out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ChatOptions",
    "Completion",
    "Delta",
    "FinishReason",
    "Message",
    "Role",
    "TokenLogprob",
    "Usage",
    "as_messages",
]

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "error"]


class Message(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str) -> Message:
        return cls(role="assistant", content=content)


def as_messages(prompt: str | Message | Sequence[Message | dict[str, Any]]) -> list[Message]:
    """Normalise what callers pass: a string is one user turn.

    >>> as_messages("hi")
    [Message(role='user', content='hi')]
    """
    if isinstance(prompt, str):
        return [Message.user(prompt)]
    if isinstance(prompt, Message):
        return [prompt]
    return [m if isinstance(m, Message) else Message.model_validate(m) for m in prompt]


class ChatOptions(BaseModel):
    """Sampling and output controls shared by every backend.

    ``json_schema`` asks for structured output: the local backend constrains decoding with a
    grammar so the text always parses; API backends pass it as ``response_format``.
    ``truncate`` is the explicit opt-in to dropping prompt text that does not fit the window:
    ``"start"`` drops the oldest non-system turns first. Without it an oversized prompt raises
    :class:`~lamina.errors.ContextOverflowError`.
    """

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    max_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    truncate: Literal["start"] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def deterministic(self) -> bool:
        """Greedy or seeded: the same request gives the same answer, so it may be cached."""
        return self.temperature == 0.0 or self.seed is not None


class Usage(BaseModel):
    """Token counts and what they cost. ``cost_usd`` is None when the price is unknown."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class TokenLogprob(BaseModel):
    """A generated token with its log-probability and the most likely alternatives."""

    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Completion(BaseModel):
    """The result of one chat call."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    model: str
    logprobs: list[TokenLogprob] | None = None
    cached: bool = False
    latency_ms: float = 0.0
    #: Turns dropped to fit the window; only ever non-zero when the caller asked truncate="start".
    truncated_messages: int = 0


class Delta(BaseModel):
    """One piece of a streamed completion. The last delta carries finish_reason and usage."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    logprob: TokenLogprob | None = None
