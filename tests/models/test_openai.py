"""The OpenAI-compatible backend against a real peer (llama_cpp.server on loopback serving the
bundled GGUF) and, for failures a real server will not produce on cue, a scripted stub."""

from __future__ import annotations

import asyncio
import json
import time

import jsonschema
import pytest

from lamina import AuthenticationError, ConfigError, InvalidRequestError, TransientError
from lamina.models import get_model
from lamina.models.openai import OpenAIModel
from lamina.settings import Settings
from lamina.types import Delta
from tests.stub_server import Reply, StubServer

CHAT_OK = {
    "choices": [{"message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
}


def fast_retries(settings: Settings, **extra: object) -> Settings:
    return settings.model_copy(update={"backoff_base_s": 0.01, "max_retries": 3, **extra})


@pytest.mark.integration
class TestAgainstLlamaCppServer:
    def model(self, url: str, settings: Settings) -> OpenAIModel:
        return OpenAIModel("smollm2", base_url=url, settings=settings)

    def test_chat(self, llama_server: str, settings: Settings) -> None:
        result = self.model(llama_server, settings).chat(
            "What is the capital of France? Answer in one word.", temperature=0, max_tokens=16
        )
        assert "Paris" in result.text
        assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
        assert result.usage.cost_usd is None  # a self-hosted model has no list price

    def test_stream_matches_chat(self, llama_server: str, settings: Settings) -> None:
        model = self.model(llama_server, settings.model_copy(update={"cache": False}))
        whole = model.chat("Name two colours.", temperature=0, max_tokens=16)
        deltas = list(model.stream("Name two colours.", temperature=0, max_tokens=16))
        assert "".join(d.text for d in deltas) == whole.text
        assert len(deltas) > 2  # it really streamed
        assert deltas[-1].finish_reason in ("stop", "length")

    def test_async_stream(self, llama_server: str, settings: Settings) -> None:
        model = self.model(llama_server, settings.model_copy(update={"cache": False}))
        options = {"temperature": 0, "max_tokens": 8}

        async def run() -> list[Delta]:
            return [d async for d in model.astream("Say hi.", **options)]

        deltas = asyncio.run(run())
        whole = model.chat("Say hi.", **options)  # greedy: the same text either way
        assert whole.text and "".join(d.text for d in deltas) == whole.text
        assert len(deltas) > 2 and deltas[-1].finish_reason in ("stop", "length")

    def test_structured_output(self, llama_server: str, settings: Settings) -> None:
        schema = {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "year": {"type": "integer"},
            },
            "required": ["city", "year"],
        }
        # llama-cpp-python's server takes the schema inside a json_object response_format.
        settings.openai.json_mode = "json_object"
        result = self.model(llama_server, settings).chat(
            "Name a city and a year.", temperature=0, json_schema=schema, max_tokens=60
        )
        jsonschema.validate(json.loads(result.text), schema)

    def test_prompt_over_the_servers_window_is_a_clear_error(
        self, llama_server: str, settings: Settings
    ) -> None:
        with pytest.raises(InvalidRequestError, match="rejected"):
            self.model(llama_server, settings).chat("hello " * 3000, max_tokens=8)

    def test_spec_with_inline_url(self, llama_server: str) -> None:
        model = get_model(f"openai:smollm2@{llama_server}")
        assert isinstance(model, OpenAIModel) and model.base_url == llama_server


def test_429_with_retry_after_then_200(settings: Settings) -> None:
    with StubServer() as stub:
        stub.replies.extend(
            [
                Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}),
                Reply(200, CHAT_OK),
            ]
        )
        model = OpenAIModel("m", base_url=stub.url, settings=fast_retries(settings))
        started = time.monotonic()
        assert model.chat("ping").text == "pong"
        assert time.monotonic() - started >= 1.0  # waited as told
        assert len(stub.requests) == 2


def test_5xx_is_retried_and_4xx_is_not(settings: Settings) -> None:
    with StubServer() as stub:
        stub.replies.extend(
            [Reply(503, {"error": "busy"}), Reply(500, "oops"), Reply(200, CHAT_OK)]
        )
        model = OpenAIModel("m", base_url=stub.url, settings=fast_retries(settings))
        assert model.chat("ping").text == "pong"
        stub.replies.append(Reply(400, {"error": {"message": "bad field"}}))
        with pytest.raises(InvalidRequestError, match="bad field"):
            model.chat("again")
        assert len(stub.requests) == 4


def test_timeout_is_transient_and_retried(settings: Settings) -> None:
    with StubServer() as stub:
        stub.replies.extend([Reply(200, CHAT_OK, delay=1.0), Reply(200, CHAT_OK)])
        model = OpenAIModel("m", base_url=stub.url, settings=fast_retries(settings, timeout_s=0.3))
        assert model.chat("ping").text == "pong"
        assert len(stub.requests) == 2
        stub.replies.extend([Reply(200, CHAT_OK, delay=1.0)] * 4)
        with pytest.raises(TransientError, match="Timed out"):
            model.chat("slow", temperature=0.5)


def test_unreachable_server_names_the_url(settings: Settings) -> None:
    model = OpenAIModel(
        "m", base_url="http://127.0.0.1:9/v1", settings=fast_retries(settings, max_retries=0)
    )
    with pytest.raises(TransientError, match=r"127\.0\.0\.1:9"):
        model.chat("ping")


def test_auth_failure_and_missing_key(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with StubServer() as stub:
        stub.replies.append(Reply(401, {"error": {"message": "invalid key"}}))
        with pytest.raises(AuthenticationError, match="invalid key"):
            OpenAIModel("m", base_url=stub.url, api_key="sk-bad", settings=settings).chat("x")
        assert stub.requests[0].headers["authorization"] == "Bearer sk-bad"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o-mini", settings=settings)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert OpenAIModel("gpt-4o-mini", settings=settings).official


def test_request_shape_and_cost(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with StubServer() as stub:
        stub.replies.append(Reply(200, CHAT_OK))
        model = OpenAIModel(
            "gpt-4o-mini", base_url=stub.url, settings=settings.model_copy(update={"cache": False})
        )
        result = model.chat(
            "ping", temperature=0, seed=4, stop=["\n"], json_schema={"type": "object"}
        )
        body = stub.requests[0].body
        assert stub.requests[0].path == "/chat/completions"
        assert body["seed"] == 4 and body["stop"] == ["\n"] and body["temperature"] == 0
        assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
        assert result.usage.cost_usd == pytest.approx((5 * 0.15 + 1 * 0.60) / 1e6)


def test_stream_parses_sse_with_usage(settings: Settings) -> None:
    chunks = [
        {"choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        "[DONE]",
    ]
    with StubServer() as stub:
        stub.replies.append(Reply(200, sse=chunks))
        deltas = list(OpenAIModel("m", base_url=stub.url, settings=settings).stream("hi"))
    assert [d.text for d in deltas[:-1]] == ["Hel", "lo"]
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage is not None and deltas[-1].usage.prompt_tokens == 3
