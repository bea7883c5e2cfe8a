"""Any OpenAI-compatible chat server: OpenAI, vLLM, Ollama, llama.cpp server, TGI, SGLang.

Spec: ``openai:MODEL`` uses the ``openai.base_url`` setting; ``openai:MODEL@URL`` names the
server inline, e.g. ``openai:qwen2.5-7b@http://gpu-box:8000/v1``. The key is read from the
environment variable named by ``openai.api_key_env`` (``OPENAI_API_KEY``); it is required for
api.openai.com and optional for self-hosted servers.

Tools go out as OpenAI's native ``tools``/``tool_choice``; :func:`wire_message`,
:func:`wire_tool` and :func:`wire_tool_choice` are the one mapping between Lamina's types and
that wire format (``lamina serve`` speaks the same format to its clients).
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import urlparse

from lamina.errors import ConfigError
from lamina.models.http import HTTPChatModel, StreamState, auth_headers
from lamina.models.pricing import PRICES
from lamina.settings import Settings, get_settings
from lamina.types import (
    ChatOptions,
    Completion,
    Delta,
    FinishReason,
    Message,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)

__all__ = [
    "OpenAIModel",
    "auth_headers",
    "is_official",
    "split_spec",
    "wire_message",
    "wire_tool",
    "wire_tool_call",
    "wire_tool_choice",
]

OPENAI_HOST = "api.openai.com"
_WINDOWS = {"gpt-4o": 128_000, "gpt-4.1": 1_047_576, "o3": 200_000, "o4": 200_000}
_FINISH: dict[str | None, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    None: "stop",
}


def is_official(base_url: str) -> bool:
    return urlparse(base_url).hostname == OPENAI_HOST


def split_spec(name: str | None, example: str, kind: str) -> tuple[str, str | None]:
    """``MODEL`` or ``MODEL@URL`` (the part of an ``openai:`` spec after the colon).

    >>> split_spec("qwen@http://gpu:8000/v1", "openai:MODEL", "backend")
    ('qwen', 'http://gpu:8000/v1')
    """
    if not name:
        raise ConfigError(
            f"The openai {kind} needs a model name: {example} "
            f"(or openai:MODEL@http://host:port/v1 for a self-hosted server)."
        )
    model, _, url = name.partition("@")
    return model, url or None


class OpenAIModel(HTTPChatModel):
    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or get_settings()
        base_url = base_url or settings.openai.base_url
        self.official = is_official(base_url)
        headers = auth_headers(base_url, api_key, settings)
        super().__init__(model, base_url=base_url, headers=headers, settings=settings)

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        model, url = split_spec(name, "--model openai:MODEL", "backend")
        return cls(model, base_url=url, settings=settings)

    @classmethod
    def known_models(cls, settings: Settings) -> list[str]:
        return [f"openai:{m}" for m in PRICES if not m.startswith("claude")] + [
            "openai:MODEL@URL (any OpenAI-compatible server)"
        ]

    @property
    def context_window(self) -> int:
        if self.settings.openai.context_window:
            return self.settings.openai.context_window
        for prefix, window in _WINDOWS.items():
            if self.model.startswith(prefix):
                return window
        return 8192

    def _endpoint(self) -> str:
        return "/chat/completions"

    def _body(self, messages: list[Message], options: ChatOptions, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [wire_message(m) for m in messages],
            "temperature": options.temperature,
            "top_p": options.top_p,
            "max_tokens": options.max_tokens,
        }
        if not self.official:
            body["top_k"] = options.top_k  # vLLM, llama.cpp and Ollama accept it; OpenAI does not
        if options.stop:
            body["stop"] = options.stop
        if options.seed is not None:
            body["seed"] = options.seed
        if options.json_schema is not None:
            if self.settings.openai.json_mode == "json_object":
                body["response_format"] = {"type": "json_object", "schema": options.json_schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "output",
                        "schema": options.json_schema,
                        "strict": True,
                    },
                }
        if options.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = options.logprobs
        if options.tools:
            body["tools"] = [wire_tool(t) for t in options.tools]
            body["tool_choice"] = wire_tool_choice(options.tool_choice)
            if options.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = options.parallel_tool_calls
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _completion(self, body: dict[str, Any]) -> Completion:
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        calls = [
            ToolCall(
                id=c.get("id") or f"call_{i}",
                name=c["function"]["name"],
                arguments=c["function"].get("arguments") or "{}",
            )
            for i, c in enumerate(choice["message"].get("tool_calls") or [])
        ]
        return Completion(
            text=choice["message"].get("content") or "",
            tool_calls=calls,
            finish_reason=_FINISH.get(choice.get("finish_reason"), "stop"),
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
            ),
            model=self.name,
            logprobs=_logprobs(choice.get("logprobs")),
        )

    def _event(self, event: dict[str, Any], state: StreamState) -> Delta | None:
        if usage := event.get("usage"):
            state.prompt_tokens = usage.get("prompt_tokens", 0)
            state.completion_tokens = usage.get("completion_tokens", 0)
        choices = event.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        if reason := choice.get("finish_reason"):
            state.finish_reason = _FINISH.get(reason, "stop")
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        pieces = [
            ToolCallDelta(
                index=c.get("index", i),
                id=c.get("id"),
                name=(c.get("function") or {}).get("name"),
                arguments=(c.get("function") or {}).get("arguments") or "",
            )
            for i, c in enumerate(delta.get("tool_calls") or [])
        ]
        if not text and not pieces:
            return None
        logprobs = _logprobs(choice.get("logprobs"))
        return Delta(text=text, tool_calls=pieces, logprob=logprobs[0] if logprobs else None)


def _logprobs(block: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not block or not block.get("content"):
        return None
    return [
        TokenLogprob(
            token=item["token"],
            logprob=item["logprob"],
            top={alt["token"]: alt["logprob"] for alt in item.get("top_logprobs") or []},
        )
        for item in block["content"]
    ]


def wire_tool_call(call: ToolCall) -> dict[str, Any]:
    """A call in an assistant message, as OpenAI writes it.

    >>> wire_tool_call(ToolCall(id="call_1", name="calc", arguments="{}"))
    {'id': 'call_1', 'type': 'function', 'function': {'name': 'calc', 'arguments': '{}'}}
    """
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def wire_message(message: Message) -> dict[str, Any]:
    """A message in OpenAI's chat format: calls on assistant turns, ``tool_call_id`` on results.

    >>> wire_message(Message.tool("4", "call_1"))
    {'role': 'tool', 'content': '4', 'tool_call_id': 'call_1'}
    """
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [wire_tool_call(c) for c in message.tool_calls]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    elif message.name:
        out["name"] = message.name
    return out


def wire_tool(tool: ToolSpec) -> dict[str, Any]:
    """A tool definition in OpenAI's ``tools`` list."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def wire_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    """``auto``/``none``/``required`` as they are; a named tool as OpenAI's object.

    >>> wire_tool_choice({"name": "calc"})
    {'type': 'function', 'function': {'name': 'calc'}}
    """
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice
