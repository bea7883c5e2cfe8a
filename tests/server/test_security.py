"""API keys, per-key rate limits, CORS and upload safety."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from lamina.cli import app as cli
from lamina.errors import InvalidRequestError
from lamina.server import KeyStore, UploadTooLargeError, read_limited, safe_filename
from lamina.settings import get_settings
from tests.server.conftest import call

CHAT = {"model": "lamina", "messages": [{"role": "user", "content": "hi"}]}


def test_no_keys_means_open(make_app: Any) -> None:
    assert call(make_app(), "POST", "/v1/chat/completions", json=CHAT).status_code == 200


def test_keys_gate_every_route_but_health(make_app: Any, tmp_path: Any) -> None:
    app = make_app()
    store = KeyStore(tmp_path / "home" / "keys.sqlite")
    key = store.create("ci")
    assert key.startswith("lam-") and len(key) > 40
    for method, url in [("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/docs")]:
        r = call(app, method, url)
        assert r.status_code == 401, url
        assert r.json()["error"]["code"] == "missing_api_key"
        assert r.headers["www-authenticate"] == "Bearer"
    bad = call(
        app,
        "POST",
        "/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": "Bearer lam-notarealkey0000000000"},
    )
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    good = call(
        app, "POST", "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
    )
    assert good.status_code == 200
    assert call(app, "GET", "/health").status_code == 200
    raw = (tmp_path / "home" / "keys.sqlite").read_bytes()
    assert key.encode() not in raw and key[12:].encode() not in raw
    store.create("other")  # with no key left auth would be off again, by design
    assert store.revoke("ci")
    assert (
        call(app, "GET", "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
        == 401
    )


def test_per_key_request_limit_answers_429_at_once(make_app: Any, tmp_path: Any) -> None:
    app = make_app()
    key = KeyStore(tmp_path / "home" / "keys.sqlite").create("tight", requests_per_minute=2)
    headers = {"Authorization": f"Bearer {key}"}
    statuses = [
        call(app, "POST", "/v1/chat/completions", json=CHAT, headers=headers) for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["retry-after"]) >= 1
    assert statuses[2].json()["error"]["type"] == "rate_limit_error"


def test_per_key_token_limit(make_app: Any) -> None:
    app = make_app(tokens_per_minute=5)  # the server default applies to anonymous use too
    long = {**CHAT, "messages": [{"role": "user", "content": "w " * 20}]}
    assert call(app, "POST", "/v1/chat/completions", json=long).status_code == 200
    r = call(app, "POST", "/v1/chat/completions", json=CHAT)
    assert r.status_code == 429 and "retry-after" in r.headers


def test_cors_preflight_needs_no_key(make_app: Any, tmp_path: Any) -> None:
    app = make_app(cors_origins=["https://app.example"])
    KeyStore(tmp_path / "home" / "keys.sqlite").create("ci")
    r = call(
        app,
        "OPTIONS",
        "/v1/chat/completions",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_cli_keys_create_list_revoke() -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "laptop"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert KeyStore(get_settings().keys_path).verify(key) is not None
    listed = runner.invoke(cli, ["keys", "list"])
    assert "laptop" in listed.stdout and key not in listed.stdout
    assert runner.invoke(cli, ["keys", "create", "laptop"]).exit_code == 1
    assert runner.invoke(cli, ["keys", "revoke", "laptop"]).exit_code == 0
    assert KeyStore(get_settings().keys_path).verify(key) is None


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a/b.txt",
        "..\\x.txt",
        "C:evil.txt",
        "nul\x00.txt",
        "..",
        ".",
        "",
        "  ",
        "CON",
        "tab\there.md",
        "x" * 300,
    ],
)
def test_safe_filename_refuses_escapes(name: str) -> None:
    with pytest.raises(InvalidRequestError):
        safe_filename(name)


@pytest.mark.parametrize("name", ["notes.md", "Report 2024 (final).pdf", ".env.example", "é.txt"])
def test_safe_filename_keeps_plain_names(name: str) -> None:
    assert safe_filename(name) == name


def test_read_limited_stops_at_the_limit() -> None:
    import asyncio

    async def chunks(n: int) -> Any:
        for _ in range(n):
            yield b"x" * 1000

    assert len(asyncio.run(read_limited(chunks(3), 3000))) == 3000
    with pytest.raises(UploadTooLargeError, match="3000 bytes"):
        asyncio.run(read_limited(chunks(4), 3000))
