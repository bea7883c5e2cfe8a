"""The Anthropic backend's translation to and from the Messages API. Anthropic cannot be
reached offline, so a loopback stub answers in the documented wire format."""

from __future__ import annotations

import json

import pytest

from lamina import ConfigError, Message, RateLimitError
from lamina.models.anthropic import AnthropicModel
from lamina.settings import Settings
from tests.stub_server import Reply, StubServer

MESSAGE = {
    "type": "message",
    "content": [{"type": "text", "text": "Bonjour"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 12, "output_tokens": 3},
}


def model(url: str, settings: Settings) -> AnthropicModel:
    fast = settings.model_copy(update={"backoff_base_s": 0.01, "cache": False})
    return AnthropicModel("claude-3-5-haiku-latest", api_key="sk-ant", base_url=url, settings=fast)


def test_chat_request_and_response(settings: Settings) -> None:
    with StubServer() as stub:
        stub.replies.append(Reply(200, MESSAGE))
        result = model(stub.url, settings).chat(
            [Message.system("Be French."), Message.user("Hello")], max_tokens=20, stop=["."]
        )
        request = stub.requests[0]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant"
    assert request.headers["anthropic-version"]
    assert request.body["system"] == "Be French."
    assert request.body["messages"] == [{"role": "user", "content": "Hello"}]
    assert request.body["stop_sequences"] == ["."]
    assert result.text == "Bonjour"
    assert result.usage.prompt_tokens == 12 and result.usage.completion_tokens == 3
    assert result.usage.cost_usd == pytest.approx((12 * 0.8 + 3 * 4.0) / 1e6)


def test_structured_output_through_a_forced_tool(settings: Settings) -> None:
    answer = {
        **MESSAGE,
        "content": [{"type": "tool_use", "name": "structured_output", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use",
    }
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    with StubServer() as stub:
        stub.replies.append(Reply(200, answer))
        result = model(stub.url, settings).chat("City?", json_schema=schema)
        body = stub.requests[0].body
    assert body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "structured_output"}
    assert json.loads(result.text) == {"city": "Paris"}


def test_stream_events(settings: Settings) -> None:
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 9}}},
        {"type": "content_block_start", "index": 0},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Bon"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "jour"}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]
    with StubServer() as stub:
        stub.replies.append(Reply(200, sse=events))
        deltas = list(model(stub.url, settings).stream("Hello"))
    assert "".join(d.text for d in deltas) == "Bonjour"
    final = deltas[-1]
    assert final.finish_reason == "length"
    assert final.usage is not None and (
        final.usage.prompt_tokens,
        final.usage.completion_tokens,
    ) == (9, 2)


def test_overloaded_is_retried_and_429_carries_retry_after(settings: Settings) -> None:
    with StubServer() as stub:
        stub.replies.extend([Reply(529, {"error": {"message": "overloaded"}}), Reply(200, MESSAGE)])
        assert model(stub.url, settings).chat("Hello").text == "Bonjour"
        stub.replies.extend([Reply(429, {"error": {"message": "slow"}}, {"retry-after": "120"})])
        with pytest.raises(RateLimitError) as info:  # longer than backoff_max_s: not waited out
            model(stub.url, settings).chat("Hello")
        assert info.value.retry_after == 120


def test_missing_key_names_the_variable(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-3-5-haiku-latest", settings=settings)
