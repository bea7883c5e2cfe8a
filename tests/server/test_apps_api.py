"""POST /v1/apps/*: on a live server over real HTTP, with keys and tenancy as on /v1/ask; each
answer validates against its documented model; one route on the bundled model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from lamina.models.scripted import ScriptedModel
from lamina.server import KeyStore, apps_schemas, create_app
from lamina.settings import Settings
from tests.server.conftest import LiveServer
from tests.server.test_documents import minilm

__all__ = ["minilm"]

SECRET = b"# A's notes\n\nThe vault combination of key A is 31-41-59.\n"
ROUTES = {
    "/v1/apps/summarize": "SummarizeResponse",
    "/v1/apps/classify": "ClassifyResponse",
    "/v1/apps/extract": "ExtractResponse",
    "/v1/apps/email/reply": "EmailResponse",
    "/v1/apps/email/draft": "EmailResponse",
    "/v1/apps/research": "ResearchResponse",
}


def upload(client: httpx.Client, name: str, data: bytes, collection: str) -> None:
    r = client.post(
        "/v1/documents",
        files=[("files", (name, data, "application/octet-stream"))],
        data={"collection": collection},
    )
    assert r.status_code == 202, r.text
    job = r.json()
    deadline = time.monotonic() + 60
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["state"] == "done", job


@pytest.fixture
def world(tmp_path: Path, minilm: Any) -> Iterator[dict[str, Any]]:
    home = tmp_path / "home"
    store = KeyStore(home / "keys.sqlite")
    keys = {"a": store.create("alice"), "b": store.create("bob")}
    models = {
        "lamina": ScriptedModel(),  # echoes: the RAG steps quote their passages
        "labeller": ScriptedModel(['{"label": "ham"}'] * 100),
        "extractor": ScriptedModel(['{"who": "Bo", "age": 7}'] * 100),
        "summariser": ScriptedModel(['{"points": ["Key A keeps a vault combination."]}'] * 100),
        "writer": ScriptedModel(['{"subject": "Vault", "body": "It is 31-41-59 [1]."}'] * 100),
    }
    settings = Settings(home=home, model="scripted", cache=False, max_retries=0)
    app = create_app(settings, models=models, warm_up=False, index_embedder=minilm)
    with LiveServer(app) as server:
        clients = {
            name: httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
            for name, key in keys.items()
        }
        upload(clients["a"], "secret.md", SECRET, "private")
        yield {"url": server.url, "app": app, **clients}
        for client in clients.values():
            client.close()


def test_each_app_answers_its_documented_model_over_http(world: dict[str, Any]) -> None:
    a: httpx.Client = world["a"]
    r = a.post(
        "/v1/apps/classify", json={"text": "Lunch?", "labels": ["spam", "ham"], "model": "labeller"}
    )
    assert r.status_code == 200, r.text
    got = apps_schemas.ClassifyResponse.model_validate(r.json())
    assert got.label == "ham" and got.model == "labeller" and got.usage.total_tokens > 0

    schema = {
        "type": "object",
        "properties": {"who": {"type": "string"}, "age": {"type": "integer"}},
    }
    r = a.post(
        "/v1/apps/extract", json={"text": "Bo is 7.", "schema": schema, "model": "extractor"}
    )
    assert r.status_code == 200, r.text
    extraction = apps_schemas.ExtractResponse.model_validate(r.json())
    jsonschema.validate(extraction.data, schema)
    assert extraction.data == {"who": "Bo", "age": 7}

    text = "# Vault\n\nKey A keeps a vault. The combination is written down."
    r = a.post(
        "/v1/apps/summarize", json={"text": text, "title": "notes.md", "model": "summariser"}
    )
    assert r.status_code == 200, r.text
    summary = apps_schemas.SummarizeResponse.model_validate(r.json())
    (point,) = summary.points
    (section,) = point.sections
    assert section.source == "notes.md" and section.heading == "Vault"
    assert "vault" in text[section.start : section.end]

    r = a.post(
        "/v1/apps/email/reply",
        json={
            "email": "Subject: Vault\n\nWhat is the vault combination?",
            "use_documents": True,
            "signature": "Al",
            "model": "writer",
        },
    )
    assert r.status_code == 200, r.text
    reply = apps_schemas.EmailResponse.model_validate(r.json())
    assert reply.subject == "Re: Vault" and reply.body.endswith("Al")
    assert reply.facts and reply.citations == reply.facts[:1]
    cited = reply.citations[0].citation
    assert cited.source == "secret.md" and cited.verified  # the file's name, not a server path
    assert "31-41-59" in cited.quote
    doc = a.get(f"/v1/documents/{cited.document_id}/text").json()
    assert doc["text"][cited.start : cited.end] == cited.quote

    r = a.post("/v1/apps/email/draft", json={"brief": "Tell Bo the plan.", "model": "writer"})
    assert r.status_code == 200, r.text
    draft = apps_schemas.EmailResponse.model_validate(r.json())
    assert draft.subject == "Vault" and draft.facts == []  # no documents asked for

    r = a.post(
        "/v1/apps/research", json={"question": "What is the vault combination?", "questions": 0}
    )
    assert r.status_code == 200, r.text
    report = apps_schemas.ResearchResponse.model_validate(r.json())
    assert report.findings and report.sources
    assert all(s.source == "secret.md" and s.verified for s in report.sources)
    assert "/" not in json.dumps([s.source for s in report.sources])


def test_key_b_gets_nothing_of_key_a_through_the_apps(world: dict[str, Any]) -> None:
    b: httpx.Client = world["b"]
    research = {"question": "What is the vault combination?", "questions": 0}
    own = b.post("/v1/apps/research", json=research)
    assert own.status_code == 400 and "31-41-59" not in own.text  # B has nothing to search
    theirs = b.post("/v1/apps/research", json={**research, "collection": "private"})
    assert theirs.status_code == 404 and "31-41-59" not in theirs.text
    for route, body in [
        ("/v1/apps/email/reply", {"email": "What is the vault combination?"}),
        ("/v1/apps/email/draft", {"brief": "Tell Bo the vault combination."}),
    ]:
        r = b.post(route, json={**body, "use_documents": True, "collection": "private"})
        assert r.status_code == 404 and "31-41-59" not in r.text, route
    anonymous = httpx.post(
        world["url"] + "/v1/apps/classify", json={"text": "x", "labels": ["a", "b"]}
    )
    assert anonymous.status_code == 401


def test_every_app_route_is_documented(world: dict[str, Any]) -> None:
    schema = world["a"].get("/openapi.json").json()
    for path, model in ROUTES.items():
        operation = schema["paths"][path]["post"]
        assert "apps" in operation["tags"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].split("/")[-1].endswith("Request"), path
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].endswith(f"/{model}"), (path, ok)
        for status in ("400", "401", "404", "413", "422", "429", "504"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error["$ref"].endswith("/ErrorBody"), (path, status)
    extract = schema["components"]["schemas"]["ExtractRequest"]["properties"]
    assert "schema" in extract  # the wire name, not the Python one


@pytest.mark.integration
def test_classify_over_http_with_the_bundled_model(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path / "home", cache=False), warm_up=False)
    with LiveServer(app) as server:
        r = httpx.post(
            server.url + "/v1/apps/classify",
            json={
                "text": "I loved this film, it was wonderful.",
                "labels": ["positive", "negative"],
            },
            timeout=120,
        )
    assert r.status_code == 200, r.text
    result = apps_schemas.ClassifyResponse.model_validate(r.json())
    assert result.label == "positive" and result.confidence is not None
    assert result.confidence > 0.5
