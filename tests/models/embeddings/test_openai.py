"""The OpenAI-compatible embedder against a scripted server on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.errors import AuthenticationError, ConfigError, ProviderError, RateLimitError
from lamina.models.embeddings import get_embedder
from lamina.models.embeddings.openai import OpenAIEmbedder
from lamina.settings import Settings
from tests.stub_server import Reply, StubServer


def _vectors(texts: list[str], offset: int = 0) -> dict[str, object]:
    # Unnormalised on purpose, and in reverse order: the client sorts by index and normalises.
    data = [
        {"object": "embedding", "index": i, "embedding": [float(offset + i + 1), 1.0, 0.0]}
        for i in range(len(texts))
    ]
    return {"object": "list", "data": data[::-1], "model": "m"}


@pytest.fixture
def fast(tmp_path: object) -> Settings:
    return Settings(home=tmp_path, backoff_base_s=0.01, max_retries=2)  # type: ignore[arg-type]


def test_batches_orders_and_normalises(fast: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    texts = ["a", "b", "c", "d", "e"]
    with StubServer() as server:
        server.replies.extend(
            [Reply(200, _vectors(texts[:2])), Reply(200, _vectors(texts[2:4], 2))]
        )
        server.replies.append(Reply(200, _vectors(texts[4:], 4)))
        # OPENAI_API_KEY goes only to openai.base_url, so this server is the configured one.
        openai = fast.openai.model_copy(update={"base_url": server.url + "/v1"})
        configured = fast.model_copy(update={"openai": openai})
        embedder = OpenAIEmbedder("m", batch_size=2, settings=configured)
        vectors = embedder.embed_documents(texts)
    assert [r.path for r in server.requests] == ["/v1/embeddings"] * 3
    assert [r.body["input"] for r in server.requests] == [["a", "b"], ["c", "d"], ["e"]]
    assert server.requests[0].body["model"] == "m"
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"
    expected = np.array([[i + 1, 1.0, 0.0] for i in range(5)])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert vectors.dtype == np.float32
    assert embedder.dimension == 3


def test_429_then_200_is_retried(fast: Settings) -> None:
    with StubServer() as server:
        server.replies.append(Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "0"}))
        server.replies.append(Reply(200, _vectors(["q"])))
        embedder = get_embedder(f"openai:m@{server.url}/v1", fast)
        vector = embedder.embed_query("q")
    assert len(server.requests) == 2
    assert vector.shape == (3,)


def test_rate_limit_gives_up_after_max_retries(fast: Settings) -> None:
    with StubServer() as server:
        server.replies.extend(Reply(429, {"error": "busy"}, {"retry-after": "0"}) for _ in range(3))
        embedder = OpenAIEmbedder("m", base_url=server.url, settings=fast)
        with pytest.raises(RateLimitError, match="429"):
            embedder.embed_documents(["x"])
    assert len(server.requests) == 3


def test_bad_key_is_not_retried(fast: Settings) -> None:
    with StubServer() as server:
        server.replies.append(Reply(401, {"error": {"message": "bad key"}}))
        embedder = OpenAIEmbedder("m", base_url=server.url, api_key="wrong", settings=fast)
        with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
            embedder.embed_documents(["x"])
    assert len(server.requests) == 1


def test_wrong_count_is_an_error(fast: Settings) -> None:
    with StubServer() as server:
        server.replies.append(Reply(200, _vectors(["only one"])))
        embedder = OpenAIEmbedder("m", base_url=server.url, settings=fast)
        with pytest.raises(ProviderError, match="1 embeddings for 2 inputs"):
            embedder.embed_documents(["x", "y"])


def test_unknown_dimension_is_probed_once(fast: Settings) -> None:
    with StubServer() as server:
        server.replies.append(Reply(200, _vectors(["probe"])))
        embedder = OpenAIEmbedder("m", base_url=server.url, settings=fast)
        assert embedder.embed_documents([]).shape == (0, 3)
        assert embedder.dimension == 3
    assert len(server.requests) == 1


def test_known_model_needs_no_call(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    embedder = get_embedder("openai:text-embedding-3-small", settings)
    assert (embedder.dimension, embedder.max_tokens) == (1536, 8191)
    assert embedder.embed_documents([]).shape == (0, 1536)


def test_token_estimate_rounds_up_and_adds_nothing(settings: Settings) -> None:
    embedder = OpenAIEmbedder("m", base_url="http://127.0.0.1:9/v1", settings=settings)
    counts = [embedder.count_tokens(t) for t in ("", "abc", "abcd", "hello", "x" * 4000)]
    assert counts == [0, 1, 1, 2, 1000]  # "" is 0: chunking subtracts what a model adds


def test_official_api_needs_a_key(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        get_embedder("openai:text-embedding-3-small", settings)


def test_spec_needs_a_model(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="openai:MODEL@"):
        get_embedder("openai", settings)
