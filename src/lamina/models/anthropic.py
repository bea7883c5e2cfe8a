"""Anthropic's Messages API.

Spec: ``anthropic:MODEL``, e.g. ``anthropic:claude-3-5-haiku-latest``; the key comes from
``ANTHROPIC_API_KEY`` (the ``anthropic.api_key_env`` setting). Structured output uses the
API's tool mechanism: the schema becomes one forced tool, and its input is the JSON answer.
"""

from __future__ import annotations

import json
import os
from typing import Any, Self

from lamina.errors import ConfigError, ProviderError
from lamina.models.http import HTTPChatModel, StreamState
from lamina.models.pricing import PRICES
from lamina.settings import Settings, get_settings
from lamina.types import ChatOptions, Completion, Delta, FinishReason, Message, Usage

__all__ = ["AnthropicModel"]

_TOOL = "structured_output"
_FINISH: dict[str | None, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "stop",  # only our own structured-output tool is ever offered
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
        turns = [
            {"role": "assistant" if m.role == "assistant" else "user", "content": m.content}
            for m in messages
            if m.role != "system"
        ]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
            "max_tokens": options.max_tokens,
            "temperature": min(options.temperature, 1.0),
        }
        if options.top_p < 1.0 and options.temperature > 0:
            body["top_p"] = options.top_p
        if system:
            body["system"] = system
        if options.stop:
            body["stop_sequences"] = options.stop
        if options.json_schema is not None:
            body["tools"] = [
                {
                    "name": _TOOL,
                    "description": "Give the answer as JSON matching this schema.",
                    "input_schema": options.json_schema,
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": _TOOL}
        if stream:
            body["stream"] = True
        return body

    def _completion(self, body: dict[str, Any]) -> Completion:
        parts = []
        for block in body.get("content", []):
            if block.get("type") == "text":
                parts.append(block["text"])
            elif block.get("type") == "tool_use":
                parts.append(json.dumps(block.get("input", {})))
        usage = body.get("usage") or {}
        return Completion(
            text="".join(parts),
            finish_reason=_FINISH.get(body.get("stop_reason"), "stop"),
            usage=Usage(
                prompt_tokens=usage.get("input_tokens", 0),
                completion_tokens=usage.get("output_tokens", 0),
            ),
            model=self.name,
        )

    def _event(self, event: dict[str, Any], state: StreamState) -> Delta | None:
        kind = event.get("type")
        if kind == "message_start":
            usage = event.get("message", {}).get("usage", {})
            state.prompt_tokens = usage.get("input_tokens", 0)
        elif kind == "message_delta":
            state.finish_reason = _FINISH.get(event.get("delta", {}).get("stop_reason"), "stop")
            state.completion_tokens = event.get("usage", {}).get("output_tokens", 0)
        elif kind == "content_block_delta":
            delta = event.get("delta", {})
            text = delta.get("text") or delta.get("partial_json")
            if text:
                return Delta(text=text)
        elif kind == "error":
            raise ProviderError(f"{self.name} stream error: {event.get('error')}")
        return None
