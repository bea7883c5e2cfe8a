"""The OpenAI wire format: request bodies in, response bodies and stream chunks out.

Requests accept (and ignore) fields Lamina has no use for, so the official SDK works unchanged;
fields it cannot honour (``n`` > 1, tools, echo) are refused with a 400 that says so. Every
string in a request must be valid Unicode: JSON can spell a lone surrogate (``"\\ud800"``),
which no tokenizer or encoder accepts, so it is a 400 naming where it is. Numbers must be
finite (``NaN`` is valid Python JSON, not a temperature).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lamina.errors import InvalidRequestError
from lamina.types import ChatOptions, Completion, Delta, FinishReason, Message, TokenLogprob

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


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def to_message(self) -> Message:
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
        with _invalid_request("message"):
            return Message(role=role, content=text)


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
    tools: list[Any] | None = None

    def to_messages(self) -> list[Message]:
        if not self.messages:
            raise InvalidRequestError("'messages' is empty: send at least one message.")
        return [m.to_message() for m in self.messages]

    def to_options(self) -> ChatOptions:
        if self.tools:
            raise InvalidRequestError("Tool calls are not supported by this server yet.")
        extra: dict[str, Any] = {"json_schema": json_schema(self.response_format)}
        if self.max_completion_tokens is not None and self.max_tokens is None:
            extra["max_tokens"] = self.max_completion_tokens
        if self.logprobs:
            extra["logprobs"] = self.top_logprobs or 0
        return self._options(**extra)


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
        return schema
    if kind == "json_object":
        schema = response_format.get("schema") or {"type": "object"}
        if not isinstance(schema, dict):
            raise InvalidRequestError("response_format.schema must be a JSON Schema object.")
        return schema
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
                "message": {"role": "assistant", "content": result.text},
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
        if delta is not None and (delta.text or not role):
            content["content"] = delta.text
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
