"""Tenancy: key B cannot list, read, ask over, delete or follow the jobs of key A's documents,
nor rate its answers or reach them through an agent; an admin key shares a collection with
everyone, read-only; with no keys everything is the one local tenant's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lamina.models.scripted import ScriptedModel, tool_call
from lamina.server import KeyStore, create_app
from lamina.settings import Settings
from tests.server.test_documents import GUIDE, minilm, request, upload

__all__ = ["minilm"]

SECRET = b"# A's notes\n\nThe vault combination of key A is 31-41-59.\n"
HANDBOOK = b"# Handbook\n\nEvery employee gets twelve days of leave a year.\n"


@pytest.fixture
def world(tmp_path: Path, minilm: Any) -> dict[str, Any]:
    home = tmp_path / "home"
    store = KeyStore(home / "keys.sqlite")
    keys = {
        "a": store.create("alice"),
        "b": store.create("bob"),
        "admin": store.create("root", admin=True),
    }
    agent_model = ScriptedModel(
        [
            tool_call("search_documents", query="vault combination"),
            tool_call("final_answer", answer="?"),
        ]
    )
    settings = Settings(home=home, model="scripted", cache=False, max_retries=0)
    app = create_app(
        settings,
        models={"lamina": ScriptedModel(), "agent": agent_model},
        warm_up=False,
        index_embedder=minilm,
    )
    auth = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
    job = upload(app, [("secret.md", SECRET)], collection="private", headers=auth["a"])
    (doc,) = request(app, "GET", "/v1/documents", headers=auth["a"]).json()["data"]
    ask = {"question": "What is the vault combination?", "collection": "private"}
    run = request(app, "POST", "/v1/ask", json=ask, headers=auth["a"]).json()
    assert "31-41-59" in run["answer"]
    return {"app": app, "auth": auth, "job": job, "doc": doc, "run": run}


def test_key_b_sees_nothing_of_key_a(world: dict[str, Any]) -> None:
    app, b, doc = world["app"], world["auth"]["b"], world["doc"]

    def get(url: str, **kwargs: Any) -> Any:
        return request(app, "GET", url, headers=b, **kwargs)

    assert get("/v1/documents").json()["data"] == []
    assert get("/v1/collections").json()["data"] == []
    assert get("/v1/documents", params={"collection": "private"}).status_code == 404
    missing = get("/v1/documents/" + "0" * 32 + "/text")
    theirs = get(f"/v1/documents/{doc['id']}/text")
    assert theirs.status_code == missing.status_code == 404
    assert (
        theirs.json()["error"]["message"].replace(doc["id"], "0" * 32)
        == (missing.json()["error"]["message"])
    )  # word for word: an id cannot be probed
    assert request(app, "DELETE", f"/v1/documents/{doc['id']}", headers=b).status_code == 404
    assert get(f"/v1/jobs/{world['job']['id']}").status_code == 404
    assert get("/v1/jobs").json()["data"] == []
    ask = {"question": "What is the vault combination?", "collection": "private"}
    assert request(app, "POST", "/v1/ask", json=ask, headers=b).status_code == 404
    own = request(app, "POST", "/v1/ask", json={"question": ask["question"]}, headers=b)
    assert own.status_code == 400 and "31-41-59" not in own.text  # B has nothing to search
    for k in ("admin",):  # an admin is a tenant too: it sees only what it owns or was shared
        assert request(app, "GET", "/v1/documents", headers=world["auth"][k]).json()["data"] == []
    rate = {"run_id": world["run"]["run_id"], "rating": "up"}
    assert request(app, "POST", "/v1/feedback", json=rate, headers=b).status_code == 404
    # B uploads its own "private": a different collection, same name.
    upload(app, [("mine.md", GUIDE)], collection="private", headers=b)
    assert [d["name"] for d in get("/v1/documents").json()["data"]] == ["mine.md"]
    # An agent of B searching documents finds B's, never A's.
    r = request(
        app,
        "POST",
        "/v1/agent",
        json={"task": "vault?", "model": "agent", "stream": False},
        headers=b,
    )
    observation = r.json()["steps"][0]["observation"]
    assert "mine.md" in observation and "31-41-59" not in observation
    # ...and A still has everything.
    a = world["auth"]["a"]
    assert [d["name"] for d in request(app, "GET", "/v1/documents", headers=a).json()["data"]] == [
        "secret.md"
    ]
    assert request(app, "POST", "/v1/feedback", json=rate, headers=a).status_code == 200


def test_admin_shares_a_collection_read_only(world: dict[str, Any]) -> None:
    app, auth = world["app"], world["auth"]
    upload(app, [("handbook.md", HANDBOOK)], collection="handbook", headers=auth["admin"])
    refused = request(app, "POST", "/v1/collections/private/share", json={}, headers=auth["a"])
    assert refused.status_code == 403 and "admin key" in refused.text
    r = request(app, "POST", "/v1/collections/handbook/share", json={}, headers=auth["admin"])
    assert r.status_code == 200 and r.json()["shared"] is True
    (shared,) = request(app, "GET", "/v1/collections", headers=auth["b"]).json()["data"]
    assert shared["name"].endswith("/handbook") and not shared["own"] and shared["shared"]
    (doc,) = request(app, "GET", "/v1/documents", headers=auth["b"]).json()["data"]
    assert doc["name"] == "handbook.md" and doc["own"] is False
    answer = request(
        app,
        "POST",
        "/v1/ask",
        json={"question": "How many days of leave?", "collection": shared["name"]},
        headers=auth["b"],
    ).json()
    assert "twelve days" in answer["answer"]
    text = request(app, "GET", f"/v1/documents/{doc['id']}/text", headers=auth["b"])
    assert text.status_code == 200
    delete = request(app, "DELETE", f"/v1/documents/{doc['id']}", headers=auth["b"])
    assert delete.status_code == 403 and delete.json()["error"]["type"] == "permission_error"
    r = request(
        app,
        "POST",
        "/v1/documents",
        files=[("files", ("x.md", b"# x\n\ny"))],
        data={"collection": shared["name"]},
        headers=auth["b"],
    )
    assert r.status_code == 403
    request(
        app, "POST", "/v1/collections/handbook/share", json={"shared": False}, headers=auth["admin"]
    )
    assert request(app, "GET", "/v1/documents", headers=auth["b"]).json()["data"] == []


def test_without_keys_everything_is_the_local_tenants(tmp_path: Path, minilm: Any) -> None:
    settings = Settings(home=tmp_path / "home", model="scripted", cache=False, max_retries=0)
    app = create_app(settings, warm_up=False, index_embedder=minilm)
    upload(app, [("guide.md", GUIDE)], collection="notes")
    me = request(app, "GET", "/v1/me").json()
    assert me["key"] is None and me["auth"] is False and me["admin"] is True
    assert [c["name"] for c in request(app, "GET", "/v1/collections").json()["data"]] == ["notes"]
    assert (tmp_path / "home" / "server" / "files" / "local" / "notes" / "guide.md").exists()
