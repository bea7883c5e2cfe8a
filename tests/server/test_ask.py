"""POST /v1/ask: the ``lamina ask --json`` object over documents uploaded in the same test;
streamed tokens, drafts withdrawn by a retry, not found, the feedback loop; POST /v1/agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from lamina.cli import app as cli
from lamina.models.scripted import ScriptedModel, tool_call
from lamina.server import KeyStore, create_app
from lamina.server.wire import AgentResult, AskResponse
from lamina.settings import Settings, get_settings
from tests.server.conftest import LiveServer
from tests.server.test_documents import GUIDE, build, minilm, request, upload

__all__ = ["minilm"]


def _events(text: str) -> list[tuple[str, Any]]:
    """(event name, data) of an SSE body; ``[DONE]`` as ("done", None)."""
    found: list[tuple[str, Any]] = []
    for block in text.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        found.append(("done", None) if data == "[DONE]" else (name, json.loads(data)))
    return found


def _shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (list items by their first element)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


@pytest.mark.integration
def test_ask_with_a_real_key_returns_the_cli_json_object(tmp_path: Path) -> None:
    """The done-when: a real server process (uvicorn) with a real key, documents uploaded
    through POST /v1/documents, and the answer is what `lamina ask --json` prints."""
    settings = get_settings()  # LAMINA_HOME of this test: the CLI below records there too
    key = KeyStore(settings.keys_path).create("client")
    auth = {"Authorization": f"Bearer {key}"}
    guide = tmp_path / "guide.md"
    guide.write_bytes(GUIDE)
    app = create_app(settings.model_copy(update={"cache": False}))
    with LiveServer(app) as server:
        client = httpx.Client(base_url=server.url, headers=auth, timeout=60)
        assert httpx.post(f"{server.url}/v1/ask", json={"question": "x"}).status_code == 401
        r = client.post(
            "/v1/documents", files=[("files", ("guide.md", GUIDE))], data={"collection": "c"}
        )
        assert r.status_code == 202, r.text
        job = r.json()
        while job["state"] in ("queued", "running"):
            job = client.get(f"/v1/jobs/{job['id']}").json()
        assert job["state"] == "done", job
        question = "What is the capital of Velmora?"
        answer = client.post("/v1/ask", json={"question": question, "collection": "c"}).json()
    printed = CliRunner().invoke(
        cli, ["ask", question, "--docs", str(guide), "--model", "local", "--json"]
    )
    assert printed.exit_code == 0, printed.output
    expected = json.loads(printed.stdout)
    assert _shape(answer) == _shape(expected)
    AskResponse.model_validate(answer)  # the documented schema, exactly
    assert answer["answer"] == expected["answer"]
    assert "Ostrava Nova" in answer["answer"] and answer["found"] is True
    for got, want in zip(answer["citations"], expected["citations"], strict=True):
        assert got["source"] == "guide.md" and want["source"] == str(guide.resolve())
        same = ("n", "page", "start", "end", "quote", "verified")
        assert {k: got[k] for k in same} == {k: want[k] for k in same}
    assert answer["strategy"] == expected["strategy"] == "extract"
    assert answer["run_id"].startswith("run-")


def test_stream_sends_the_final_object_last(tmp_path: Path, minilm: Any) -> None:
    app = build(tmp_path / "home", minilm)
    upload(app, [("guide.md", GUIDE)])
    r = request(
        app, "POST", "/v1/ask", json={"question": "What is the capital of Velmora?", "stream": True}
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert [name for name, _ in events] == ["token", "answer", "done"]
    assert events[0][1] == {"text": events[1][1]["answer"], "final": True}
    AskResponse.model_validate(events[1][1])
    plain = request(app, "POST", "/v1/ask", json={"question": "What is the capital of Velmora?"})
    assert plain.json()["answer"] == events[1][1]["answer"]


def test_generate_drafts_are_withdrawn_by_a_retry(tmp_path: Path, minilm: Any) -> None:
    model = ScriptedModel(
        ["Bananas orbit the planet Jupiter daily [1].", "Ostrava Nova is the capital [1]."]
    )
    settings = Settings(home=tmp_path / "home", model="scripted", cache=False, max_retries=0)
    app = create_app(settings, models={"lamina": model}, warm_up=False, index_embedder=minilm)
    upload(app, [("guide.md", GUIDE)])
    body = {"question": "What is the capital of Velmora?", "strategy": "generate", "stream": True}
    events = _events(request(app, "POST", "/v1/ask", json=body).text)
    names = [name for name, _ in events]
    retry = names.index("retry")
    drafts = [d["text"] for n, d in events[:retry] if n == "token"]
    assert "".join(drafts) == "Bananas orbit the planet Jupiter daily [1]."
    assert all(not d["final"] for n, d in events[:retry] if n == "token")
    final = events[-2][1]
    assert names[-2:] == ["answer", "done"]
    assert "Bananas" not in final["answer"] and final["strategy"] == "generate"
    assert final["citations"][0]["verified"] is True


def test_not_found_no_documents_unknown_collection_and_model(tmp_path: Path, minilm: Any) -> None:
    app = build(tmp_path / "home", minilm)
    empty = request(app, "POST", "/v1/ask", json={"question": "Anything?"})
    assert empty.status_code == 400 and "no documents to search yet" in empty.text
    upload(app, [("guide.md", GUIDE)], collection="c")
    r = request(app, "POST", "/v1/ask", json={"question": "Who won the 2018 FIFA World Cup?"})
    answer = r.json()
    assert answer["found"] is False and answer["answer"] == "Not found in the documents."
    assert answer["citations"] == [] and answer["sources"][0]["source"] == "guide.md"
    assert answer["strategy"] == "not-found"
    r = request(app, "POST", "/v1/ask", json={"question": "q", "collection": "nope"})
    assert r.status_code == 404 and "Your collections: c" in r.text
    r = request(app, "POST", "/v1/ask", json={"question": "q", "model": "local:/etc/passwd"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    pool = app.state.lamina.pool
    assert all(s.admission.running == 0 for s in pool.all())  # every slot given back


def test_feedback_from_http_reaches_the_tuning_dataset(tmp_path: Path, minilm: Any) -> None:
    settings = get_settings()
    app = create_app(
        settings.model_copy(update={"model": "scripted", "cache": False}),
        warm_up=False,
        index_embedder=minilm,
    )
    upload(app, [("guide.md", GUIDE)])
    answer = request(app, "POST", "/v1/ask", json={"question": "What is Velmora's capital?"})
    run_id = answer.json()["run_id"]
    fix = "The capital of Velmora is Ostrava Nova."
    r = request(app, "POST", "/v1/feedback", json={"run_id": run_id, "rating": "down", "fix": fix})
    assert r.status_code == 200 and r.json() == {
        "run_id": run_id,
        "object": "feedback",
        "rating": "down",
        "fix": fix,
    }
    bad = request(app, "POST", "/v1/feedback", json={"run_id": run_id, "rating": "up", "fix": "x"})
    assert bad.status_code == 400
    out = tmp_path / "sft.jsonl"
    pairs = tmp_path / "dpo.jsonl"
    result = CliRunner().invoke(
        cli, ["tune", "dataset", "--from-feedback", "--out", str(out), "--pairs", str(pairs)]
    )
    assert result.exit_code == 0, result.output
    assert fix in out.read_text() and fix in pairs.read_text()


def test_agent_streams_steps_then_the_result(tmp_path: Path, minilm: Any) -> None:
    model = ScriptedModel(
        [tool_call("calculator", expression="6 * 7"), tool_call("final_answer", answer="42")]
    )
    settings = Settings(home=tmp_path / "home", model="scripted", cache=False, max_retries=0)
    app = create_app(settings, models={"lamina": model}, warm_up=False, index_embedder=minilm)
    r = request(app, "POST", "/v1/agent", json={"task": "What is 6 * 7?"})
    events = _events(r.text)
    assert [n for n, _ in events] == ["step", "step", "result", "done"]
    assert events[0][1]["tool"] == "calculator" and events[0][1]["observation"] == "42"
    result = events[2][1]
    AgentResult.model_validate(result)
    assert result["answer"] == "42" and result["stop_reason"] == "final_answer"
    assert result["run_id"].startswith("run-")
    refused = request(app, "POST", "/v1/agent", json={"task": "x", "tools": ["python"]})
    assert refused.status_code == 400 and "server.agent_tools" in refused.text
    assert app.state.lamina.pool.default().admission.running == 0
