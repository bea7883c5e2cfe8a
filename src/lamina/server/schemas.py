"""The OpenAI wire format: request bodies in, response bodies and stream chunks out.

Requests accept (and ignore) fields Lamina has no use for, so the official SDK works unchanged;
fields it cannot honour (``n`` > 1, echo, the legacy ``functions``) are refused with a 400 that
says so. Tool calling follows OpenAI's wire format: ``tools`` (function tools whose
``parameters`` must be a valid JSON Schema object, within :data:`MAX_TOOLS` tools and
:data:`MAX_SCHEMA_BYTES` per schema), ``tool_choice``, ``parallel_tool_calls``, assistant turns
with ``tool_calls`` and ``tool`` turns answering them by ``tool_call_id``; replies carry
``message.tool_calls`` (streamed as ``delta.tool_calls`` pieces) and ``finish_reason:
"tool_calls"``. Every
string in a request must be valid Unicode: JSON can spell a lone surrogate (``"\\ud800"``),
which no tokenizer or encoder accepts, so it is a 400 naming where it is. Numbers must be
finite (``NaN`` is valid Python JSON, not a temperature).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from lamina import jsonschemas
from lamina.errors import InvalidRequestError
from lamina.types import (
    ChatOptions,
    Completion,
    Delta,
    FinishReason,
    Message,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)

__all__ = [
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "chat_chunk",
    "chat_response",
    "completion_chunk",
    "completion_response",
    "new_id",
]


@contextmanager
def _invalid_request(what: str) -> Iterator[None]:
    """A request value our own types refuse is the client's error (400), not ours (500)."""
    try:
        yield
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in error.errors()
        )
        raise InvalidRequestError(f"Invalid {what}: {problems}") from None


#: The largest token count a request may name: what a C int holds in the engines below.
MAX_TOKENS = 2**31 - 1
#: Tools one request may offer (OpenAI's own limit).
MAX_TOOLS = 128
#: The largest ``parameters`` schema of one tool, as compact JSON.
MAX_SCHEMA_BYTES = 32 * 1024
#: How deeply a ``parameters`` schema may nest (objects and arrays): the grammar builder recurses.
MAX_SCHEMA_DEPTH = 24
#: The longest tool description.
MAX_DESCRIPTION = 4096
#: The largest lower bound (minItems, minLength, minProperties) a tool's schema may set: no
#: reply that long fits a context window, and the grammar built from it grows with the bound.
MAX_MIN_BOUND = 10_000


def lone_surrogate(value: Any, where: str = "body") -> str | None:
    """Where a lone surrogate sits in a decoded JSON value, or None.

    >>> lone_surrogate({"messages": [{"content": "ok"}, {"content": "bad \\ud800"}]})
    'body.messages[1].content, character 4'
    >>> lone_surrogate(["fine", "\\U0001f600"]) is None
    True
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")  # in C: only surrogates fail to encode
                except UnicodeEncodeError as error:
                    return f"{path}, character {error.start}"
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, f"{path} key"))
                stack.append((child, f"{path}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = lone_surrogate(data)
        if where is not None:
            raise ValueError(
                f"a string holds a lone UTF-16 surrogate ({where}), which is not valid "
                f"Unicode; send the character's full surrogate pair or its UTF-8 form"
            )
        return data


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class FunctionCallIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(max_length=64)
    arguments: str = "{}"


class ToolCallIn(BaseModel):
    """A call an earlier assistant turn made, as the client sends the conversation back."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=MAX_TOOLS)
    tool_call_id: str | None = Field(None, max_length=256)
    name: str | None = Field(None, max_length=256)

    def to_message(self, index: int = 0) -> Message:
        if isinstance(self.content, list):
            if any(p.type != "text" for p in self.content):
                raise InvalidRequestError(
                    "Only text content parts are supported; got "
                    f"{sorted({p.type for p in self.content} - {'text'})}."
                )
            text = "".join(p.text or "" for p in self.content)
        else:
            text = self.content or ""
        role = {"developer": "system", "function": "tool"}.get(self.role, self.role)
        where = f"messages[{index}]"
        if self.tool_calls and role != "assistant":
            raise InvalidRequestError(
                f"{where} is a {self.role!r} message with 'tool_calls': only assistant "
                f"messages carry tool calls."
            )
        # A legacy 'function' message names the function instead of a call id.
        call_id = self.tool_call_id or (self.name if self.role == "function" else None)
        if role == "tool" and not call_id:
            raise InvalidRequestError(
                f"{where} is a tool message without 'tool_call_id': give the id of the "
                f"assistant tool call it answers."
            )
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in self.tool_calls or []
        ]
        with _invalid_request(where):
            return Message(
                role=role,
                content=text,
                tool_calls=calls,
                tool_call_id=call_id if role == "tool" else None,
                name=self.name if role == "tool" else None,
            )


class FunctionIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(BaseModel):
    """One entry of ``tools``: ``{"type": "function", "function": {...}}``."""

    model_config = ConfigDict(extra="allow")
    type: str
    function: FunctionIn | None = None

    def to_spec(self, index: int) -> ToolSpec:
        where = f"tools[{index}]"
        if self.type != "function" or self.function is None:
            raise InvalidRequestError(
                f"{where} has type {self.type[:40]!r}; only function tools are supported: "
                f'{{"type": "function", "function": {{"name": ..., "parameters": {{...}}}}}}.'
            )
        function = self.function
        if not _TOOL_NAME.fullmatch(function.name):
            raise InvalidRequestError(
                f"{where}.function.name {function.name[:80]!r} is not a valid tool name: use "
                f"1 to 64 letters, digits, underscores or dashes."
            )
        description = function.description or ""
        if len(description) > MAX_DESCRIPTION:
            raise InvalidRequestError(
                f"{where}.function.description is {len(description)} characters long; the "
                f"limit is {MAX_DESCRIPTION}."
            )
        parameters = function.parameters
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        check_parameters(parameters, f"{where}.function.parameters")
        return ToolSpec(name=function.name, description=description, parameters=parameters)


_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_parameters(schema: dict[str, Any], where: str) -> None:
    """Refuse a tool's ``parameters`` that is not a usable JSON Schema object: too large, too
    deep, not a valid schema, or not describing an object. Raises InvalidRequestError.

    >>> check_parameters({"type": "object", "properties": {"x": {"type": "integer"}}}, "p")
    >>> check_parameters({"type": "string"}, "p")
    Traceback (most recent call last):
    ...
    lamina.errors.InvalidRequestError: p must describe an object (type 'object'); got type 'string'.
    """
    jsonschemas.check(schema, where, max_bytes=MAX_SCHEMA_BYTES, max_depth=MAX_SCHEMA_DEPTH)
    kind = schema.get("type", "object")
    if kind != "object":
        raise InvalidRequestError(
            f"{where} must describe an object (type 'object'); got type {kind!r}."
        )
    for key in ("minItems", "minLength", "minProperties"):
        bound = jsonschemas.largest(schema, key)
        if bound > MAX_MIN_BOUND:
            raise InvalidRequestError(
                f"{where} asks for {key}={bound}; the limit is {MAX_MIN_BOUND} (no reply that "
                f"long fits a context window)."
            )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _Sampling(_Request):
    model: str = ""
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=MAX_TOKENS, description="Lamina extension.")
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    def _options(self, **extra: Any) -> ChatOptions:
        if self.n != 1:
            raise InvalidRequestError(f"n={self.n} is not supported; ask for n=1.")
        values: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            **extra,
        }
        with _invalid_request("options"):
            return ChatOptions.model_validate({k: v for k, v in values.items() if v is not None})

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: list[ChatMessageIn]
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[ToolIn] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None

    def to_messages(self) -> list[Message]:
        if not self.messages:
            raise InvalidRequestError("'messages' is empty: send at least one message.")
        messages = [m.to_message(i) for i, m in enumerate(self.messages)]
        called: set[str] = set()
        for i, message in enumerate(messages):
            called.update(c.id for c in message.tool_calls)
            if message.role == "tool" and message.tool_call_id not in called:
                raise InvalidRequestError(
                    f"messages[{i}] answers tool_call_id {str(message.tool_call_id)[:80]!r}, "
                    f"which no earlier assistant message called: a tool message must follow "
                    f"the assistant message whose 'tool_calls' hold that id."
                )
        return messages

    def to_options(self) -> ChatOptions:
        for legacy in ("functions", "function_call"):
            if (self.model_extra or {}).get(legacy) is not None:
                raise InvalidRequestError(
                    f"'{legacy}' is the deprecated form of tool calling and is not supported; "
                    f"send 'tools' and 'tool_choice' instead."
                )
        extra: dict[str, Any] = {"json_schema": json_schema(self.response_format)}
        extra.update(self._tool_options())
        if self.max_completion_tokens is not None and self.max_tokens is None:
            extra["max_tokens"] = self.max_completion_tokens
        if self.logprobs:
            extra["logprobs"] = self.top_logprobs or 0
        return self._options(**extra)

    def _tool_options(self) -> dict[str, Any]:
        tools = self.tools or []
        if len(tools) > MAX_TOOLS:
            raise InvalidRequestError(
                f"'tools' lists {len(tools)} tools; the limit is {MAX_TOOLS}. Offer fewer."
            )
        specs = [tool.to_spec(i) for i, tool in enumerate(tools)]
        names = [s.name for s in specs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidRequestError(
                f"'tools' names {', '.join(map(repr, twice))} more than once: tool names must "
                f"be unique."
            )
        values: dict[str, Any] = {"tools": specs}
        if self.tool_choice is not None:
            values["tool_choice"] = tool_choice(self.tool_choice, names)
        if self.parallel_tool_calls is not None:
            values["parallel_tool_calls"] = self.parallel_tool_calls
        return values


def tool_choice(value: str | dict[str, Any], names: list[str]) -> str | dict[str, str]:
    """A request's ``tool_choice`` checked against its tools: ``auto``, ``none``, ``required``
    or ``{"name": TOOL}``.

    >>> tool_choice({"type": "function", "function": {"name": "calc"}}, ["calc"])
    {'name': 'calc'}
    >>> tool_choice("sometimes", ["calc"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lamina.errors.InvalidRequestError: tool_choice 'sometimes' is not one of 'none', 'auto', ...
    """
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise InvalidRequestError(
                f"tool_choice {value[:40]!r} is not one of 'none', 'auto', 'required' or "
                f'{{"type": "function", "function": {{"name": TOOL}}}}.'
            )
        if value == "required" and not names:
            raise InvalidRequestError("tool_choice 'required' needs at least one tool in 'tools'.")
        return value
    function = value.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if value.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequestError(
            f"A named tool_choice is "
            f'{{"type": "function", "function": {{"name": TOOL}}}}; got {json.dumps(value)[:120]}.'
        )
    if name not in names:
        raise InvalidRequestError(
            f"tool_choice names the tool {name[:80]!r}, which is not among the tools offered "
            f"({', '.join(names) or 'none'}). Add it to 'tools' or name one of those."
        )
    return {"name": name}


class CompletionRequest(_Sampling):
    """POST /v1/completions. The prompt is sent to the model as one user turn."""

    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None

    def to_messages(self) -> list[Message]:
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if len(prompts) != 1:
            raise InvalidRequestError(f"Send exactly one prompt per request; got {len(prompts)}.")
        if self.echo or self.suffix:
            raise InvalidRequestError("'echo' and 'suffix' are not supported.")
        return [Message.user(prompts[0])]

    def to_options(self) -> ChatOptions:
        return self._options(**({"logprobs": self.logprobs} if self.logprobs is not None else {}))


class EmbeddingRequest(_Request):
    """POST /v1/embeddings."""

    model: str = ""
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None

    def texts(self) -> list[str]:
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        if not items:
            raise InvalidRequestError("'input' is empty: send a string or a list of strings.")
        if not all(isinstance(i, str) for i in items):
            raise InvalidRequestError("Token-id input is not supported; send text.")
        return [str(i) for i in items]


def json_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema a ``response_format`` asks for, or None for plain text.

    >>> json_schema({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}})
    {'type': 'object'}
    >>> json_schema({"type": "json_object"})
    {'type': 'object'}
    """
    if not response_format or response_format.get("type") in (None, "text"):
        return None
    kind = response_format["type"]
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                "response_format.json_schema.schema must be a JSON Schema object."
            )
        return jsonschemas.check(  # type: ignore[no-any-return]
            schema,
            "response_format.json_schema.schema",
            max_bytes=MAX_SCHEMA_BYTES,
            max_depth=MAX_SCHEMA_DEPTH,
        )
    if kind == "json_object":
        schema = response_format.get("schema") or {"type": "object"}
        if not isinstance(schema, dict):
            raise InvalidRequestError("response_format.schema must be a JSON Schema object.")
        return jsonschemas.check(  # type: ignore[no-any-return]
            schema, "response_format.schema", max_bytes=MAX_SCHEMA_BYTES, max_depth=MAX_SCHEMA_DEPTH
        )
    raise InvalidRequestError(
        f"response_format type {kind!r} is not supported; use 'text', 'json_object' or "
        f"'json_schema'."
    )


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _finish(reason: FinishReason | None) -> str | None:
    return "stop" if reason == "error" else reason


def _token_logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.token.encode()),
        "top_logprobs": [
            {"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in lp.top.items()
        ],
    }


def usage_body(completion: Completion | Delta) -> dict[str, int]:
    usage = completion.usage
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _call_out(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _piece_out(piece: ToolCallDelta) -> dict[str, Any]:
    """A streamed piece as OpenAI sends it: the first of a call has id, type and name."""
    if piece.id is None and piece.name is None:
        return {"index": piece.index, "function": {"arguments": piece.arguments}}
    return {
        "index": piece.index,
        "id": piece.id,
        "type": "function",
        "function": {"name": piece.name or "", "arguments": piece.arguments},
    }


def chat_message(result: Completion) -> dict[str, Any]:
    """The assistant message of a reply: a call's ``content`` is null unless it said something.

    >>> chat_message(Completion(text="", finish_reason="tool_calls", usage={}, model="m",
    ...     tool_calls=[ToolCall(id="c1", name="calc", arguments="{}")]))["tool_calls"][0]
    {'id': 'c1', 'type': 'function', 'function': {'name': 'calc', 'arguments': '{}'}}
    """
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["content"] = result.text or None
        message["tool_calls"] = [_call_out(c) for c in result.tool_calls]
    return message


def chat_response(rid: str, model: str, result: Completion) -> dict[str, Any]:
    logprobs = (
        {"content": [_token_logprob(lp) for lp in result.logprobs]}
        if result.logprobs is not None
        else None
    )
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": chat_message(result),
                "finish_reason": _finish(result.finish_reason),
                "logprobs": logprobs,
            }
        ],
        "usage": usage_body(result),
    }


def chat_chunk(
    rid: str,
    model: str,
    delta: Delta | None,
    *,
    role: bool = False,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta=None`` with usage is the final usage chunk."""
    chunk: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
    }
    if delta is not None or role:
        content: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
        if delta is not None and (delta.text or not role) and not delta.tool_calls:
            content["content"] = delta.text
        if delta is not None and delta.tool_calls:
            if delta.text:
                content["content"] = delta.text
            content["tool_calls"] = [_piece_out(p) for p in delta.tool_calls]
        choice: dict[str, Any] = {
            "index": 0,
            "delta": content,
            "finish_reason": _finish(delta.finish_reason) if delta else None,
            "logprobs": None,
        }
        if delta is not None and delta.logprob is not None:
            choice["logprobs"] = {"content": [_token_logprob(delta.logprob)]}
        chunk["choices"] = [choice]
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _completion_logprobs(lps: list[TokenLogprob]) -> dict[str, Any]:
    offsets, at = [], 0
    for lp in lps:
        offsets.append(at)
        at += len(lp.token)
    return {
        "tokens": [lp.token for lp in lps],
        "token_logprobs": [lp.logprob for lp in lps],
        "top_logprobs": [lp.top for lp in lps],
        "text_offset": offsets,
    }


def completion_response(rid: str, model: str, result: Completion) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": result.text,
                "finish_reason": _finish(result.finish_reason),
                "logprobs": _completion_logprobs(result.logprobs)
                if result.logprobs is not None
                else None,
            }
        ],
        "usage": usage_body(result),
    }


def completion_chunk(
    rid: str, model: str, delta: Delta | None, *, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [],
    }
    if delta is not None:
        chunk["choices"] = [
            {
                "index": 0,
                "text": delta.text,
                "finish_reason": _finish(delta.finish_reason),
                "logprobs": _completion_logprobs([delta.logprob]) if delta.logprob else None,
            }
        ]
    if usage is not None:
        chunk["usage"] = usage
    return chunk
