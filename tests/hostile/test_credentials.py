"""An API key goes only to the base URL it was configured for (the library rule, CLI included).

Each test sets a canary key in the environment and points a client at a loopback listener
through a spec; the listener must see the request but never the key.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from lamina.errors import AuthenticationError, LaminaError
from lamina.models import get_model
from lamina.settings import Settings
from tests.hostile.canary import CANARY_KEY, Canary


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> Canary:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY_KEY)
    with Canary() as listener:
        yield listener  # type: ignore[misc]


def test_a_spec_url_gets_no_key_from_the_environment(canary: Canary, settings: Settings) -> None:
    model = get_model(f"openai:x@{canary.url}", settings=settings)
    assert model.chat("ping", temperature=0).text == "pong"
    assert canary.seen and not canary.leaked()
    assert "authorization" not in canary.seen[0].headers


def test_the_async_path_sends_no_key_either(canary: Canary, settings: Settings) -> None:
    model = get_model(f"openai:x@{canary.url}", settings=settings)
    assert asyncio.run(model.achat("ping", temperature=0)).text == "pong"
    assert canary.seen and not canary.leaked()


def test_the_embedder_sends_no_key_to_a_spec_url(canary: Canary, settings: Settings) -> None:
    from lamina.models.embeddings import get_embedder

    embedder = get_embedder(f"openai:x@{canary.url}", settings=settings)
    assert embedder.embed_documents(["a", "b"]).shape == (2, 3)
    assert canary.seen and not canary.leaked()


def test_the_configured_base_url_gets_the_key(canary: Canary, tmp_path: object) -> None:
    settings = Settings(home=tmp_path, openai={"base_url": canary.url})  # type: ignore[arg-type]
    get_model("openai:x", settings=settings).chat("ping", temperature=0)
    get_model(f"openai:x@{canary.url}/", settings=settings).chat("ping 2", temperature=0)
    assert len(canary.leaked()) == 2  # the operator configured this URL: the key belongs here


def test_an_endpoint_key_named_by_the_operator_is_sent_instead(
    canary: Canary, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("GPU_BOX_KEY", "sk-gpu-box")
    settings = Settings(
        home=tmp_path,  # type: ignore[arg-type]
        openai={"endpoint_keys": {canary.url: "GPU_BOX_KEY"}},  # type: ignore[arg-type]
    )
    get_model(f"openai:x@{canary.url}", settings=settings).chat("ping", temperature=0)
    from lamina.models.embeddings import get_embedder

    get_embedder(f"openai:x@{canary.url}", settings=settings).embed_documents(["a"])
    assert not canary.leaked()
    assert [s.headers["authorization"] for s in canary.seen] == ["Bearer sk-gpu-box"] * 2


def test_anthropic_key_stays_with_the_anthropic_url(canary: Canary, settings: Settings) -> None:
    from lamina.models.anthropic import AnthropicModel

    model = AnthropicModel("claude-x", base_url=canary.url, settings=settings)
    with contextlib.suppress(LaminaError):  # the listener does not speak Anthropic's format
        model.chat("ping", temperature=0)
    assert canary.seen and not canary.leaked()


def test_a_refusal_says_why_no_key_was_sent(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    from tests.stub_server import Reply, StubServer

    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    stub = StubServer()
    with stub:
        stub.replies.append(Reply(401, {"error": {"message": "no key"}}))
        model = get_model(f"openai:x@{stub.url}/v1", settings=settings)
        with pytest.raises(AuthenticationError) as caught:
            model.chat("ping", temperature=0)
    message = str(caught.value)
    assert "OPENAI_API_KEY is sent only to https://api.openai.com/v1" in message
    assert "endpoint_keys" in message and CANARY_KEY not in message


def test_the_rule() -> None:
    from lamina.models.http import api_key_for, same_endpoint

    settings = Settings(openai={"endpoint_keys": {"http://gpu:8000/v1": "GPU"}})  # type: ignore[arg-type]
    assert same_endpoint("http://GPU:8000/v1/", "http://gpu:8000/v1")
    assert not same_endpoint("http://gpu:8000/v1", "http://gpu:8001/v1")
    assert not same_endpoint("http://gpu:8000/v1", "http://gpu:8000/v1/evil")
    assert api_key_for("http://elsewhere/v1", settings) is None
