"""Issue 9, item 7: an upstream that answers a stream request without a stream is an error,
not an empty success."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lamina.errors import ProviderError
from lamina.models import get_model
from lamina.server import create_app
from lamina.settings import ServerSettings, Settings
from tests.server.conftest import call
from tests.stub_server import Reply, StubServer

COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
}


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        home=tmp_path,
        model="scripted",
        cache=False,
        max_retries=0,
        openai={"base_url": url},  # type: ignore[arg-type]
        server=ServerSettings(models={"up": "openai:m"}),
    )


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(200, COMPLETION), "instead of an event stream"),
        (Reply(200, {"error": {"message": "streaming is off"}}), "streaming is off"),
        (Reply(200, sse=[]), "no stream events"),
    ],
)
def test_a_stream_request_answered_without_a_stream_is_an_error(
    tmp_path: Path, reply: Reply, words: str
) -> None:
    with StubServer() as stub:
        model = get_model("openai:m", settings=_settings(tmp_path, stub.url + "/v1"))
        stub.replies.append(reply)
        with pytest.raises(ProviderError, match=words):
            list(model.stream("hi"))
        stub.replies.append(reply)

        async def consume() -> None:
            async for _ in model.astream("hi"):
                pass

        with pytest.raises(ProviderError, match=words):
            asyncio.run(consume())


def test_the_server_says_502_instead_of_an_empty_200(tmp_path: Path) -> None:
    with StubServer() as stub:
        app = create_app(_settings(tmp_path, stub.url + "/v1"), warm_up=False)
        stub.replies.append(Reply(200, COMPLETION))
        body = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
        r = call(app, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 502
    assert "event stream" in r.json()["error"]["message"]


def test_a_real_stream_still_works(tmp_path: Path) -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"content": "he"}}]},
        {"choices": [{"index": 0, "delta": {"content": "llo"}, "finish_reason": "stop"}]},
        "[DONE]",
    ]
    with StubServer() as stub:
        model = get_model("openai:m", settings=_settings(tmp_path, stub.url + "/v1"))
        stub.replies.append(Reply(200, sse=events))
        assert "".join(d.text for d in model.stream("hi")) == "hello"
