"""The data that flows between layers: messages in, completions and deltas out.

Tool calling follows OpenAI's shape so the server maps it 1:1 to the wire format: an assistant
:class:`Message` carries ``tool_calls`` (each an ``id``, a function ``name`` and its
``arguments`` as a JSON string), the result goes back as a ``tool`` message naming the
``tool_call_id``, a :class:`Completion` that calls tools ends with ``finish_reason="tool_calls"``
and a stream sends :class:`ToolCallDelta` pieces (the first one of a call has its id and name,
the rest carry fragments of the arguments).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ChatOptions",
    "Completion",
    "Delta",
    "FinishReason",
    "Message",
    "Role",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolSpec",
    "Usage",
    "as_messages",
]

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "error"]


class ToolSpec(BaseModel):
    """What a model is told about a tool: its name, what it does, the JSON schema of its arguments.

    Built from anything with those three attributes (a :class:`lamina.tools.Tool`, say), so
    ``chat(..., tools=[calculator])`` takes tools directly.
    """

    model_config = ConfigDict(frozen=True, from_attributes=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolCall(BaseModel):
    """One call the model asks for: ``arguments`` is the JSON text of the arguments object.

    >>> ToolCall(id="call_1", name="calculator", arguments='{"expression": "2+2"}').parsed()
    {'expression': '2+2'}
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: str = "{}"

    def parsed(self) -> Any:
        """The arguments as Python data (raises ``json.JSONDecodeError`` on text that is not
        JSON, which only a remote model can send)."""
        return json.loads(self.arguments or "{}")


class ToolCallDelta(BaseModel):
    """A piece of a streamed tool call. ``index`` says which call of the turn it belongs to;
    the first piece of a call has ``id`` and ``name``, the rest append to ``arguments``."""

    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


#: ``auto`` lets the model choose, ``none`` forbids calls, ``required`` forces one, and
#: ``{"name": TOOL}`` forces that tool.
ToolChoice = Literal["auto", "none", "required"] | dict[str, str]


class Message(BaseModel):
    """One chat turn. An assistant turn may carry ``tool_calls``; a ``tool`` turn answers the
    call named by ``tool_call_id`` (``name`` is the tool's name, for backends that want it)."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _tool_fields(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {self.role!r} ones")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        return self

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Sequence[ToolCall] = ()) -> Message:
        return cls(role="assistant", content=content, tool_calls=list(tool_calls))

    @classmethod
    def tool(cls, content: str, tool_call_id: str, name: str | None = None) -> Message:
        """The result of the call ``tool_call_id``."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)


def as_messages(prompt: str | Message | Sequence[Message | dict[str, Any]]) -> list[Message]:
    """Normalise what callers pass: a string is one user turn.

    >>> as_messages("hi")[0].content
    'hi'
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

    ``tools`` offers tools to call (:class:`ToolSpec`, or anything with ``name``,
    ``description`` and ``parameters``); ``tool_choice`` is ``"auto"``, ``"none"``,
    ``"required"`` or ``{"name": TOOL}`` (OpenAI's and Anthropic's spellings of a named choice
    are accepted too). The local backend constrains decoding so a call always parses and its
    arguments validate against the tool's schema.
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
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool | None = None

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _named_choice(cls, value: Any) -> Any:
        """``{"type": "function", "function": {"name": X}}`` (OpenAI) and ``{"type": "tool",
        "name": X}`` (Anthropic) both mean ``{"name": X}``; ``"any"`` means ``"required"``."""
        if isinstance(value, dict):
            function = value.get("function")
            name = function.get("name") if isinstance(function, dict) else value.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"a named tool_choice needs a tool name, e.g. {{'name': 'calculator'}}; "
                    f"got {value!r}"
                )
            return {"name": name}
        return "required" if value == "any" else value

    @model_validator(mode="after")
    def _choice_matches_tools(self) -> ChatOptions:
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique; got {names}")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice='required' needs at least one tool in 'tools'")
        if isinstance(self.tool_choice, dict) and self.tool_choice["name"] not in names:
            raise ValueError(
                f"tool_choice names {self.tool_choice['name']!r}, which is not among the "
                f"tools offered ({', '.join(names) or 'none'})"
            )
        return self

    @property
    def offered_tools(self) -> list[ToolSpec]:
        """The tools the model may call under ``tool_choice``: none, all, or the named one."""
        if self.tool_choice == "none":
            return []
        if isinstance(self.tool_choice, dict):
            return [t for t in self.tools if t.name == self.tool_choice["name"]]
        return list(self.tools)

    @property
    def must_call(self) -> bool:
        """True when the reply has to be a tool call."""
        return self.tool_choice == "required" or isinstance(self.tool_choice, dict)

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
    #: Calls the model asks for; then ``finish_reason`` is ``"tool_calls"``.
    tool_calls: list[ToolCall] = Field(default_factory=list)

    def message(self) -> Message:
        """The assistant turn to append to the conversation."""
        return Message.assistant(self.text, self.tool_calls)


class Delta(BaseModel):
    """One piece of a streamed completion. The last delta carries finish_reason and usage."""

    text: str = ""
    tool_calls: list[ToolCallDelta] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    logprob: TokenLogprob | None = None
