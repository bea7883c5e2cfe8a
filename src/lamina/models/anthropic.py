"""Anthropic's Messages API.

Spec: ``anthropic:MODEL``, e.g. ``anthropic:claude-3-5-haiku-latest``; the key comes from
``ANTHROPIC_API_KEY`` (the ``anthropic.api_key_env`` setting). Structured output uses the
API's tool mechanism: the schema becomes one forced tool, and its input is the JSON answer.

Tool calling maps to ``tool_use`` blocks in assistant turns and ``tool_result`` blocks in the
user turn after them; ``tool_choice`` ``required`` is Anthropic's ``any``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Self

from lamina.errors import ConfigError, InvalidRequestError, ProviderError
from lamina.models.http import HTTPChatModel, StreamState
from lamina.models.pricing import PRICES
from lamina.settings import Settings, get_settings
from lamina.types import (
    ChatOptions,
    Completion,
    Delta,
    FinishReason,
    Message,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

__all__ = ["AnthropicModel"]

_TOOL = "structured_output"
_FINISH: dict[str | None, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",  # "stop" again when the only tool was structured output
    None: "stop",
}


class AnthropicModel(HTTPChatModel):
    backend = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or get_settings()
        api_key = api_key or os.environ.get(settings.anthropic.api_key_env)
        if not api_key:
            raise ConfigError(
                f"No Anthropic API key. Set the {settings.anthropic.api_key_env} environment "
                f"variable."
            )
        headers = {"x-api-key": api_key, "anthropic-version": settings.anthropic.version}
        super().__init__(
            model,
            base_url=base_url or settings.anthropic.base_url,
            headers=headers,
            settings=settings,
        )

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        return cls(name or "claude-3-5-haiku-latest", settings=settings)

    @classmethod
    def known_models(cls, settings: Settings) -> list[str]:
        return [f"anthropic:{m}" for m in PRICES if m.startswith("claude")]

    @property
    def context_window(self) -> int:
        return 200_000

    def _endpoint(self) -> str:
        return "/v1/messages"

    def _body(self, messages: list[Message], options: ChatOptions, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": _turns(messages),
            "max_tokens": options.max_tokens,
            "temperature": min(options.temperature, 1.0),
        }
        if options.top_p < 1.0 and options.temperature > 0:
            body["top_p"] = options.top_p
        if system:
            body["system"] = system
        if options.stop:
            body["stop_sequences"] = options.stop
        if options.json_schema is not None and options.tools:
            raise InvalidRequestError(
                "Anthropic answers in structured output through a forced tool, so a request "
                "cannot have both json_schema and tools: pass one of them."
            )
        if options.json_schema is not None:
            body["tools"] = [
                {
                    "name": _TOOL,
                    "description": "Give the answer as JSON matching this schema.",
                    "input_schema": options.json_schema,
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": _TOOL}
        elif options.tools:
            if any(t.name == _TOOL for t in options.tools):
                raise InvalidRequestError(
                    f"The tool name {_TOOL!r} is reserved for structured output with Anthropic; "
                    f"rename the tool."
                )
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in options.tools
            ]
            body["tool_choice"] = _tool_choice(options.tool_choice, options.parallel_tool_calls)
        if stream:
            body["stream"] = True
        return body

    def _completion(self, body: dict[str, Any]) -> Completion:
        parts = []
        calls = []
        structured = False
        for block in body.get("content", []):
            if block.get("type") == "text":
                parts.append(block["text"])
            elif block.get("type") == "tool_use" and block.get("name") == _TOOL:
                parts.append(json.dumps(block.get("input", {})))
                structured = True
            elif block.get("type") == "tool_use":
                calls.append(
                    ToolCall(
                        id=block["id"], name=block["name"], arguments=json.dumps(block.get("input"))
                    )
                )
        usage = body.get("usage") or {}
        finish = _FINISH.get(body.get("stop_reason"), "stop")
        return Completion(
            text="".join(parts),
            finish_reason="stop" if structured and finish == "tool_calls" else finish,
            usage=Usage(
                prompt_tokens=usage.get("input_tokens", 0),
                completion_tokens=usage.get("output_tokens", 0),
            ),
            model=self.name,
            tool_calls=calls,
        )

    def _event(self, event: dict[str, Any], state: StreamState) -> Delta | None:
        kind = event.get("type")
        calls: dict[int, int] = state.extra.setdefault("calls", {})  # block index -> call index
        if kind == "message_start":
            usage = event.get("message", {}).get("usage", {})
            state.prompt_tokens = usage.get("input_tokens", 0)
        elif kind == "message_delta":
            finish = _FINISH.get(event.get("delta", {}).get("stop_reason"), "stop")
            if finish == "tool_calls" and not calls:
                finish = "stop"  # our structured-output tool: the answer was the text
            state.finish_reason = finish
            state.completion_tokens = event.get("usage", {}).get("output_tokens", 0)
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use" and block.get("name") != _TOOL:
                index = calls[event.get("index", 0)] = len(calls)
                piece = ToolCallDelta(index=index, id=block.get("id"), name=block.get("name"))
                return Delta(tool_calls=[piece])
        elif kind == "content_block_delta":
            delta = event.get("delta", {})
            block_index = event.get("index", 0)
            if delta.get("type") == "input_json_delta" and block_index in calls:
                arguments = delta.get("partial_json") or ""
                piece = ToolCallDelta(index=calls[block_index], arguments=arguments)
                return Delta(tool_calls=[piece]) if arguments else None
            text = delta.get("text") or delta.get("partial_json")
            if text:
                return Delta(text=text)
        elif kind == "error":
            raise ProviderError(f"{self.name} stream error: {event.get('error')}")
        return None


def _turns(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as Anthropic turns: calls become ``tool_use`` blocks, results ``tool_result``
    blocks in one user turn (with any user text that follows them).

    >>> from lamina.types import ToolCall
    >>> call = ToolCall(id="t1", name="calc", arguments='{"x": 1}')
    >>> for turn in _turns([Message.assistant(tool_calls=[call]), Message.tool("1", "t1")]):
    ...     print(turn["role"], turn["content"])
    assistant [{'type': 'tool_use', 'id': 't1', 'name': 'calc', 'input': {'x': 1}}]
    user [{'type': 'tool_result', 'tool_use_id': 't1', 'content': '1'}]
    """
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": m.content}] if m.content else []
            )
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c)}
                for c in m.tool_calls
            ]
            turns.append({"role": "assistant", "content": blocks})
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
        elif m.role == "user":
            block = {"type": "text", "text": m.content}
        else:
            turns.append({"role": "assistant", "content": m.content})
            continue
        last = turns[-1] if turns else None
        if last and last["role"] == "user" and isinstance(last["content"], list):
            last["content"].append(block)  # results of parallel calls share one user turn
        elif m.role == "tool":
            turns.append({"role": "user", "content": [block]})
        else:
            turns.append({"role": "user", "content": m.content})
    return turns


def _input(call: ToolCall) -> Any:
    try:
        return call.parsed()
    except json.JSONDecodeError:
        return {}  # a call another backend produced unparsed; Anthropic needs an object


def _tool_choice(choice: ToolChoice, parallel: bool | None) -> dict[str, Any]:
    """Lamina's tool_choice as Anthropic's.

    >>> _tool_choice("required", False)
    {'type': 'any', 'disable_parallel_tool_use': True}
    """
    if isinstance(choice, dict):
        out: dict[str, Any] = {"type": "tool", "name": choice["name"]}
    else:
        out = {"type": {"auto": "auto", "none": "none", "required": "any"}[choice]}
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out
