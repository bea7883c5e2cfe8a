"""The OpenAI-compatible routes, in process, against scripted models."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import numpy as np
import pytest

from lamina.errors import AuthenticationError, ContextOverflowError, RateLimitError
from lamina.models.scripted import ScriptedModel
from lamina.telemetry.logs import JsonFormatter
from tests.server.conftest import SlowModel, call, make_settings


def events(text: str) -> list[Any]:
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def chat_body(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "lamina", "messages": [{"role": "user", "content": content}], **extra}


def test_chat_completion_echoes_with_usage(make_app: Any) -> None:
    r = call(make_app(), "POST", "/v1/chat/completions", json=chat_body())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "lamina"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 2


def test_chat_stream_chunks_end_with_done_and_usage(make_app: Any) -> None:
    body = chat_body("one two three", stream=True, stream_options={"include_usage": True})
    r = call(make_app(), "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = events(r.text)
    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-2])
    assert text == "one two three"
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 3


def test_options_reach_the_model(make_app: Any) -> None:
    model = ScriptedModel(['{"a": 1}'])
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = chat_body(
        temperature=0,
        top_p=0.5,
        seed=7,
        max_tokens=12,
        stop=["END"],
        logprobs=True,
        top_logprobs=3,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    r = call(make_app({"lamina": model}), "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    opts = model.options[0]
    assert (opts.temperature, opts.top_p, opts.seed, opts.max_tokens) == (0, 0.5, 7, 12)
    assert opts.stop == ["END"] and opts.json_schema == schema and opts.logprobs == 3


def test_json_object_with_schema_maps_to_json_schema(make_app: Any) -> None:
    model = ScriptedModel(["{}"])
    schema = {"type": "object"}
    body = chat_body(response_format={"type": "json_object", "schema": schema})
    call(make_app({"lamina": model}), "POST", "/v1/chat/completions", json=body)
    assert model.options[0].json_schema == schema


def test_completions_plain_and_streamed(make_app: Any) -> None:
    app = make_app()
    r = call(app, "POST", "/v1/completions", json={"model": "lamina", "prompt": "say this"})
    assert r.status_code == 200
    assert r.json()["choices"][0]["text"] == "say this"
    assert r.json()["object"] == "text_completion"
    body = {"model": "lamina", "prompt": "a b", "stream": True}
    chunks = events(call(app, "POST", "/v1/completions", json=body).text)
    assert chunks[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == "a b"


def test_configured_models_are_served_and_cached(make_app: Any) -> None:
    app = make_app(models={"hi": "scripted:hi"})
    for _ in range(2):
        r = call(app, "POST", "/v1/chat/completions", json={**chat_body(), "model": "hi"})
        assert r.json()["choices"][0]["message"]["content"] == "hi"
        assert r.json()["model"] == "hi"
    pool = app.state.lamina.pool
    assert [s.id for s in pool.all()].count("hi") == 1
    ids = [m["id"] for m in call(app, "GET", "/v1/models").json()["data"]]
    assert ids == ["lamina", "hi", "minilm"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({**chat_body(), "model": "nosuch:thing"}, 404, "not served"),
        (chat_body(n=2), 400, "n=2"),
        ({"model": "lamina"}, 400, "messages"),
        (chat_body(temperature=9), 400, "temperature"),
        (chat_body(response_format={"type": "xml"}), 400, "xml"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(
    make_app: Any, body: dict[str, Any], status: int, words: str
) -> None:
    r = call(make_app(), "POST", "/v1/chat/completions", json=body)
    assert r.status_code == status
    assert words in r.json()["error"]["message"]


def test_a_spec_in_the_model_field_is_not_served(make_app: Any) -> None:
    r = call(
        make_app(), "POST", "/v1/chat/completions", json={**chat_body(), "model": "scripted:x"}
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
    assert "Use one of: lamina" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ContextOverflowError(10, 5, "m"), 400),
        (AuthenticationError("upstream key refused", status=401), 502),
        (RateLimitError("upstream busy", status=429, retry_after=7), 429),
    ],
)
def test_model_errors_map_to_statuses(
    make_app: Any, tmp_path: Any, error: Exception, status: int
) -> None:
    model = ScriptedModel(settings=make_settings(tmp_path))
    for stream in (False, True):
        model.enqueue(error)
        r = call(
            make_app({"lamina": model}),
            "POST",
            "/v1/chat/completions",
            json=chat_body(stream=stream),
        )
        assert r.status_code == status, r.text
        assert r.json()["error"]["message"]
        if status == 429:
            assert r.headers["retry-after"] == "7"


def test_timeout_is_504_with_a_clear_message(make_app: Any) -> None:
    model = SlowModel(delay=0.5)
    r = call(
        make_app({"lamina": model}, request_timeout_s=0.2),
        "POST",
        "/v1/chat/completions",
        json=chat_body(),
    )
    assert r.status_code == 504
    assert "request_timeout_s" in r.json()["error"]["message"]


def test_health_metrics_and_traces(make_app: Any) -> None:
    app = make_app()
    assert call(app, "GET", "/health").json()["status"] == "ok"
    call(app, "POST", "/v1/chat/completions", json=chat_body())
    metrics = call(app, "GET", "/metrics").text
    assert (
        'lamina_request_seconds_count{model="lamina",route="/v1/chat/completions",status="200"} 1.0'
        in metrics
    )
    assert 'lamina_generated_tokens_total{model="lamina"} 2.0' in metrics
    assert "lamina_time_to_first_token_seconds_bucket" in metrics
    assert 'lamina_queue_depth{model="lamina"} 0.0' in metrics
    assert (
        'lamina_key_tokens_total{key="anonymous",kind="completion",model="lamina"} 2.0' in metrics
    )
    spans = call(app, "GET", "/v1/traces").json()["data"]
    request = next(s for s in spans if s["name"] == "POST /v1/chat/completions")
    same = {s["name"] for s in spans if s["trace_id"] == request["trace_id"]}
    assert {"queue", "generate"} <= same
    generate = next(s for s in spans if s["name"] == "generate")
    assert generate["parent_id"] == request["span_id"]
    assert generate["attributes"]["lamina.completion_tokens"] == 2


def test_openapi_docs_are_served(make_app: Any) -> None:
    assert call(make_app(), "GET", "/docs").status_code == 200
    assert "/v1/chat/completions" in call(make_app(), "GET", "/openapi.json").json()["paths"]


class FakeEmbedder:
    name = "fake"
    dimension = 3

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.array([[len(t), 1.0, 0.5] for t in texts], dtype=np.float32)


def test_embeddings_float_and_base64(tmp_path: Any) -> None:
    from lamina.server import create_app

    app = create_app(make_settings(tmp_path), embedders={"fake": FakeEmbedder()})
    r = call(app, "POST", "/v1/embeddings", json={"model": "fake", "input": ["ab", "abc"]})
    assert r.status_code == 200, r.text
    assert [d["embedding"] for d in r.json()["data"]] == [[2, 1, 0.5], [3, 1, 0.5]]
    r = call(
        app,
        "POST",
        "/v1/embeddings",
        json={"model": "fake", "input": "ab", "encoding_format": "base64"},
    )
    vector = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert vector.tolist() == [2, 1, 0.5]
    assert (
        call(
            app, "POST", "/v1/embeddings", json={"model": "fake", "input": "x", "dimensions": 8}
        ).status_code
        == 400
    )


def test_embeddings_without_a_backend_is_501(tmp_path: Any, monkeypatch: Any) -> None:
    import lamina.server.embeddings as emb
    from lamina.server import create_app

    def missing() -> Any:
        raise emb.NotImplementedFeature("No embedding backend is available")

    monkeypatch.setattr(emb, "_registry_factory", missing)
    r = call(
        create_app(make_settings(tmp_path)),
        "POST",
        "/v1/embeddings",
        json={"model": "minilm", "input": "hi"},
    )
    assert r.status_code == 501
    assert "embedding" in r.json()["error"]["message"]


def test_json_logs_carry_trace_id_and_redact_secrets(make_app: Any, caplog: Any) -> None:
    app = make_app()
    with caplog.at_level(logging.INFO, logger="lamina.server.access"):
        call(
            app,
            "POST",
            "/v1/chat/completions",
            json=chat_body(),
            headers={"Authorization": "Bearer lam-supersecretvalue123"},
        )
    record = next(r for r in caplog.records if r.name == "lamina.server.access")
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 200 and line["model"] == "lamina"
    formatted = JsonFormatter().format(
        logging.makeLogRecord({"msg": "got Bearer lam-supersecretvalue123"})
    )
    assert "supersecret" not in formatted


def test_traces_are_for_admin_keys_only(tmp_path: Any) -> None:
    """Spans hold every tenant's questions and passages: an ordinary key must not read them."""
    from lamina.server import KeyStore, create_app

    home = tmp_path / "home"
    store = KeyStore(home / "keys.sqlite")
    user, admin = store.create("app"), store.create("ops", admin=True)
    app = create_app(make_settings(home))
    refused = call(app, "GET", "/v1/traces", headers={"Authorization": f"Bearer {user}"})
    assert refused.status_code == 403
    assert "admin" in refused.json()["error"]["message"]
    allowed = call(app, "GET", "/v1/traces", headers={"Authorization": f"Bearer {admin}"})
    assert allowed.status_code == 200 and allowed.json()["object"] == "list"
