"""Hostile requests to the document, ask, agent and feedback routes, and to the UI's files:
the allow-list of models and tools holds, bodies are validated (400, never 500), the UI files
cannot be used to read anything else, and the page's script never writes HTML."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from lamina.server import KeyStore
from tests.server.test_documents import GUIDE, build, minilm, request, upload

__all__ = ["minilm"]


def test_ask_and_agent_keep_the_model_and_tool_allow_lists(tmp_path: Path, minilm: Any) -> None:
    app = build(tmp_path / "home", minilm)
    upload(app, [("guide.md", GUIDE)])
    secret = tmp_path / "weights.gguf"
    secret.write_bytes(b"GGUF")
    for model in (str(secret), f"local:{secret}", "openai:gpt-4o@http://evil:1/v1", "scripted:x"):
        for route, body in (("/v1/ask", {"question": "q"}), ("/v1/agent", {"task": "t"})):
            r = request(app, "POST", route, json={**body, "model": model})
            assert r.status_code == 404, (route, model, r.text)
            assert r.json()["error"]["code"] == "model_not_found"
    for tools in (["python"], ["http_get"], ["sql"], ["calculator", "web_search"], ["../x"]):
        r = request(app, "POST", "/v1/agent", json={"task": "t", "tools": tools})
        assert r.status_code == 400 and "server.agent_tools" in r.text, (tools, r.text)


def test_bodies_are_validated(tmp_path: Path, minilm: Any) -> None:
    app = build(tmp_path / "home", minilm)
    upload(app, [("guide.md", GUIDE)])
    cases = [
        ("/v1/ask", {"question": ""}),
        ("/v1/ask", {"question": "q", "strategy": "shell"}),
        ("/v1/ask", {"question": "q", "history": ["x"] * 100}),
        ("/v1/ask", {"question": "q", "unknown": 1}),
        ("/v1/ask", {"question": ["not", "a", "string"]}),
        ("/v1/agent", {"task": "t", "max_steps": 10_000}),
        ("/v1/feedback", {"run_id": "run-x", "rating": "meh"}),
        ("/v1/feedback", {"run_id": "run-x", "rating": "down", "fix": "   "}),
        ("/v1/collections/docs/share", {"shared": "yes please"}),
    ]
    for route, body in cases:
        r = request(app, "POST", route, json=body)
        assert r.status_code == 400, (route, body, r.text)
        assert r.json()["error"]["message"]
    surrogate = b'{"question": "bad \\ud800 surrogate"}'
    json_type = {"Content-Type": "application/json"}
    r = request(app, "POST", "/v1/ask", content=surrogate, headers=json_type)
    assert r.status_code == 400 and "surrogate" in r.text, r.text
    r = request(
        app, "POST", "/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = request(app, "POST", "/v1/feedback", json={"run_id": "run-000000000000", "rating": "up"})
    assert r.status_code == 404


def test_ui_files_are_a_fixed_list_with_a_strict_policy(tmp_path: Path, minilm: Any) -> None:
    app = build(tmp_path / "home", minilm)
    KeyStore(tmp_path / "home" / "keys.sqlite").create("k")  # keys on: the API needs one
    page = request(app, "GET", "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe" not in csp
    assert request(app, "HEAD", "/ui/app.js").status_code == 200
    for path in (
        "/ui/../keys.sqlite",
        "/ui/%2e%2e/keys.sqlite",
        "/ui/",
        "/ui/app.py",
        "/ui/index.html/",
        "/../../etc/passwd",
        "/keys.sqlite",
    ):
        r = request(app, "GET", path)
        assert r.status_code in (401, 404), (path, r.status_code)
        assert b"lam-" not in r.content and b"SQLite" not in r.content
    api = request(app, "GET", "/v1/documents")
    assert api.status_code == 401 and api.headers["x-content-type-options"] == "nosniff"
    assert request(app, "POST", "/", content=b"x").status_code in (401, 404, 405)


def test_the_page_script_never_writes_html_and_keeps_the_key_out_of_urls() -> None:
    static = resources.files("lamina.server") / "static"
    script = (static / "app.js").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.strip().startswith("//"))
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setAttribute("on',
        "localStorage",
    ):
        assert sink not in code, sink
    assert re.search(r"Authorization.*Bearer", code)
    assert not re.search(r"[?&](key|api_key|token)=", code)
    html = (static / "index.html").read_text()
    assert (
        "<script>" not in html
        and " on"
        not in re.sub(r"<!--.*?-->", "", html)
        .replace("\n", " ")
        .split("<body>")[1]
        .split("onerror")[0][:0]
    )
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/ui/app.js" defer>']
    assert not re.search(r"\son[a-z]+=", html) and "style=" not in html
    assert "http://" not in html + script and "https://" not in html + script  # no CDN
