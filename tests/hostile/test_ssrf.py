"""Issue 9, item 1: a client cannot make the server load a path, call a URL or spend a key.

A loopback listener plays the upstream and holds nothing but a canary key in the server's
environment; whatever a client sends, the listener must see no request at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from lamina.server import create_app
from lamina.settings import ServerSettings, Settings
from tests.hostile.canary import CANARY_KEY, Canary
from tests.server.conftest import call
from tests.server.test_openai_sdk import lamina_serve


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY_KEY)
    with Canary() as listener:
        yield listener


def _hostile_models(canary: Canary, gguf_copy: Path) -> list[str]:
    return [
        f"openai:x@{canary.url}",
        f"openai:x@{canary.url.replace('127.0.0.1', 'localhost')}",
        "anthropic:claude-3-5-haiku-latest",
        "openai:gpt-4o-mini",
        "local:/etc/shadow",
        "local:/nonexistent.gguf",
        f"local:{gguf_copy}",
        str(gguf_copy),
        f"local-batched:{gguf_copy}",
        "st:/etc",
        "minilm:int8",
        "scripted:free text",
    ]


@pytest.fixture
def gguf_copy(tmp_path: Path) -> Path:
    path = tmp_path / "copy.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)  # never opened: its name alone is the test
    return path


def _app(tmp_path: Path) -> Any:
    settings = Settings(home=tmp_path / "home", model="scripted", cache=False)
    return create_app(settings, warm_up=False)


def test_no_model_field_reaches_a_url_a_path_or_a_key(
    canary: Canary, gguf_copy: Path, tmp_path: Path
) -> None:
    app = _app(tmp_path)
    for model in _hostile_models(canary, gguf_copy):
        for url, body in [
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
            (
                "/v1/chat/completions",
                {"messages": [{"role": "user", "content": "hi"}], "stream": True},
            ),
            ("/v1/completions", {"prompt": "hi"}),
            ("/v1/embeddings", {"input": ["hi"]}),
        ]:
            r = call(app, "POST", url, json={**body, "model": model})
            assert r.status_code == 404, (model, url, r.text)
            error = r.json()["error"]
            assert error["code"] == "model_not_found"
            served = "minilm" if url == "/v1/embeddings" else "lamina"
            assert f"Use one of: {served} " in error["message"], error
    assert canary.seen == []
    listed = [m["id"] for m in call(app, "GET", "/v1/models").json()["data"]]
    assert listed == ["lamina", "minilm"]
    assert all(s.id in ("lamina", "minilm") for s in app.state.lamina.pool.all())


def test_answers_do_not_reveal_whether_a_file_exists(tmp_path: Path, gguf_copy: Path) -> None:
    app = _app(tmp_path)

    def answer(model: str) -> tuple[int, str]:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        r = call(app, "POST", "/v1/chat/completions", json=body)
        return r.status_code, re.sub(r"The model '.*?' is", "The model NAME is", r.text)

    assert answer("local:/etc/shadow") == answer("local:/nonexistent.gguf")
    assert answer(f"local:{gguf_copy}") == answer(f"local:{gguf_copy}.missing")


def test_a_default_lamina_serve_refuses_a_url_and_the_listener_sees_nothing(
    canary: Canary,
) -> None:
    env = {"LAMINA_MODEL": "scripted", "OPENAI_API_KEY": CANARY_KEY}
    with lamina_serve(env=env) as base:
        body = {"model": f"openai:x@{canary.url}", "messages": [{"role": "user", "content": "x"}]}
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30)
        assert 400 <= r.status_code < 500
        assert "lamina" in r.json()["error"]["message"]
        r = httpx.post(
            f"{base}/v1/embeddings", json={"model": f"openai:x@{canary.url}", "input": "x"}
        )
        assert r.status_code == 404 and "minilm" in r.json()["error"]["message"]
        listed = [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]]
        assert listed == ["lamina", "minilm"]
    assert canary.seen == []
    assert not canary.leaked()


def test_an_operator_may_serve_an_upstream_and_its_key_goes_there(
    canary: Canary, tmp_path: Path
) -> None:
    # The operator's own configuration is trusted: the key goes to the configured base URL.
    settings = Settings(
        home=tmp_path / "home",
        model="scripted",
        cache=False,
        openai={"base_url": canary.url},  # type: ignore[arg-type]
        server=ServerSettings(models={"gpt": "openai:gpt-x"}),
    )
    app = create_app(settings, warm_up=False)
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    r = call(app, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "pong"
    assert len(canary.leaked()) == 1


def test_any_model_in_settings_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "lamina.toml").write_text("[server]\nany_model = true\n")
    env = {**os.environ, "LAMINA_CONFIG": str(tmp_path / "lamina.toml"), "LAMINA_MODEL": "scripted"}
    done = subprocess.run(
        [sys.executable, "-m", "lamina", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "server.any_model" in done.stderr and "server.models table" in done.stderr
    assert "Traceback" not in done.stderr
