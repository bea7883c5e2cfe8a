"""OTLP export from CLI runs to real receivers: a protobuf-decoding OTLP/HTTP receiver process
on loopback (always), and Arize Phoenix itself when ``PHOENIX_EXECUTABLE`` names its
``phoenix`` executable (Phoenix is not a dependency: it pins older packages than ours, so it
lives in a virtualenv of its own; docs/observability.md has the steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "samples" / "corpus"
QUESTION = "Which format did GGUF replace?"

pytestmark = pytest.mark.integration


def lamina(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


def wait_for(read: Any, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := read():
            return found
        time.sleep(0.2)
    return read()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    out = tmp_path / "received.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("otlp_receiver.py")), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}", out
    finally:
        process.terminate()
        process.wait(timeout=10)


def received(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_name(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [span] = [s for s in spans if s["name"] == name]
    return span


def test_lamina_ask_exports_its_trace_to_a_real_otlp_receiver(
    receiver: tuple[str, Path], tmp_path: Path
) -> None:
    endpoint, out = receiver
    env = {
        "LAMINA_HOME": str(tmp_path / "home"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,  # the standard variable: base URL
        "LAMINA_TELEMETRY__CAPTURE_CONTENT": "true",
    }
    run = lamina("ask", QUESTION, "--docs", str(CORPUS), "--strategy", "select", env=env)
    assert run.returncode == 0, run.stderr
    assert "GGML" in run.stdout
    spans = wait_for(lambda: received(out))  # the CLI flushes at exit: no waiting in practice
    root = by_name(spans, "lamina ask")
    assert root["parent_id"] is None and root["resource"]["service.name"] == "lamina"
    trace = [s for s in spans if s["trace_id"] == root["trace_id"]]
    assert {s["name"] for s in trace} >= {"lamina ask", "rag.ask", "retrieve", "llm.chat"}
    rag = by_name(trace, "rag.ask")
    assert rag["parent_id"] == root["span_id"]
    assert rag["attributes"]["input.value"] == QUESTION
    assert "GGML" in rag["attributes"]["output.value"]

    retriever = by_name(trace, "retrieve")["attributes"]
    assert retriever["openinference.span.kind"] == "RETRIEVER"
    assert retriever["input.value"] == QUESTION
    documents = [
        retriever[f"retrieval.documents.{i}.document.content"]
        for i in range(retriever["lamina.hits"])
    ]
    assert len(documents) == 8 and any("GGML" in d for d in documents)
    assert all(isinstance(retriever[f"retrieval.documents.{i}.document.score"], float)
               for i in range(8))  # fmt: skip

    llm = by_name(trace, "llm.chat")["attributes"]
    assert llm["openinference.span.kind"] == "LLM"
    assert llm["llm.model_name"].startswith("SmolLM2-135M")
    prompt, completion = llm["llm.token_count.prompt"], llm["llm.token_count.completion"]
    assert prompt > 50 and completion > 0
    assert llm["llm.token_count.total"] == prompt + completion
    assert "GGUF replace" in llm["llm.input_messages.0.message.content"]


def test_without_capture_the_export_holds_no_text(
    receiver: tuple[str, Path], tmp_path: Path
) -> None:
    endpoint, out = receiver
    env = {
        "LAMINA_HOME": str(tmp_path / "home"),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{endpoint}/v1/traces",  # the full URL
    }
    run = lamina("generate", "a private question", "-m", "scripted", env=env)
    assert run.returncode == 0, run.stderr
    spans = wait_for(lambda: received(out))
    assert {s["name"] for s in spans} == {"lamina generate", "llm.stream"}
    llm = by_name(spans, "llm.stream")["attributes"]
    assert llm["llm.token_count.completion"] == 3
    assert "private" not in json.dumps(spans)


AGENT_RUN = """
from lamina.agents import Agent
from lamina.models.scripted import ScriptedModel, tool_call
from lamina.tools import get_tool
model = ScriptedModel([tool_call("calculator", expression="6 * 7"),
                       tool_call("final_answer", answer="The secret is 42")])
print(Agent(model, [get_tool("calculator")]).run("What is my secret number?").answer)
"""


def test_an_agent_run_exports_its_steps_without_their_text(
    receiver: tuple[str, Path], tmp_path: Path
) -> None:
    endpoint, out = receiver
    env = {**os.environ, "LAMINA_HOME": str(tmp_path / "home"),
           "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", AGENT_RUN], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and "42" in done.stdout, done.stderr
    spans = wait_for(lambda: received(out))
    assert {s["name"] for s in spans} >= {"agent.run", "agent.model", "llm.chat", "agent.tool"}
    run = by_name(spans, "agent.run")["attributes"]
    assert run["openinference.span.kind"] == "AGENT" and run["lamina.steps"] == 2
    assert run["lamina.stop_reason"] == "final_answer"
    tool = by_name(spans, "agent.tool")["attributes"]
    assert tool["tool.name"] == "calculator" and tool["lamina.ok"] is True
    exported = json.dumps(spans)
    assert "secret" not in exported and "6 * 7" not in exported
    # the local store keeps the steps' text for `lamina traces show`
    local = "".join(p.read_text() for p in (tmp_path / "home" / "traces").glob("*.jsonl"))
    assert "What is my secret number?" in local and "6 * 7" in local


FAILING_RUN = """
from lamina.prompts import Step
from lamina.telemetry import spans

def parse(text):
    raise ValueError(f"could not parse {text!r}: expected a number")

try:
    with spans.span("extract.run", "CHAIN"):
        Step("parse", parse).run("SSN 078-05-1120")
except ValueError:
    print("failed")
"""


@pytest.mark.parametrize("capture", [False, True])
def test_a_failing_run_exports_only_the_exception_type_without_capture(
    receiver: tuple[str, Path], tmp_path: Path, capture: bool
) -> None:
    endpoint, out = receiver
    env = {**os.environ, "LAMINA_HOME": str(tmp_path / "home"),
           "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
           "LAMINA_TELEMETRY__CAPTURE_CONTENT": str(capture).lower()}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", FAILING_RUN], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and "failed" in done.stdout, done.stderr
    spans = wait_for(lambda: received(out))
    failed = {s["name"]: s for s in spans}
    assert set(failed) == {"extract.run", "chain.run", "chain.step"}
    for span in failed.values():  # a span opened by spans.span and two by the chains' tracer
        assert span["status"] == 2  # STATUS_CODE_ERROR
        [event] = [e for e in span["events"] if e["name"] == "exception"]
        assert event["attributes"]["exception.type"] == "ValueError"
        if capture:  # the message is content: it goes only where content goes
            assert "078-05-1120" in event["attributes"]["exception.message"]
            assert "078-05-1120" in span["status_message"]
        else:
            assert set(event["attributes"]) == {"exception.type"}
            assert span["status_message"] == "ValueError"
    if not capture:
        assert "078-05-1120" not in json.dumps(spans)


def test_env_headers_go_only_to_the_env_collector(
    receiver: tuple[str, Path], tmp_path: Path
) -> None:
    endpoint, out = receiver
    env = {
        "LAMINA_HOME": str(tmp_path / "home"),
        # a vendor key meant for the collector the variables name ...
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-vendor-key=vendor-secret-1,authorization=Bearer%20tok",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-traces-key=vendor-secret-2",
        # ... while the setting sends spans elsewhere: the key must not follow them there
        "LAMINA_SERVER__OTLP_ENDPOINT": f"{endpoint}/v1/traces",
    }
    run = lamina("generate", "hi", "-m", "scripted", env=env)
    assert run.returncode == 0, run.stderr
    spans = wait_for(lambda: received(out))
    headers = by_name(spans, "lamina generate")["request_headers"]
    assert headers["content-type"] == "application/x-protobuf"
    assert "vendor-secret" not in json.dumps(headers) and "authorization" not in headers
    # the same variables with their own endpoint: the headers are the user's, and go
    env.pop("LAMINA_SERVER__OTLP_ENDPOINT")
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    out.unlink()
    run = lamina("generate", "hi", "-m", "scripted", env=env)
    assert run.returncode == 0, run.stderr
    headers = by_name(wait_for(lambda: received(out)), "lamina generate")["request_headers"]
    assert headers["x-traces-key"] == "vendor-secret-2"  # the traces variable wins, as specified


def test_a_run_without_capture_after_one_with_it_exports_no_text(
    receiver: tuple[str, Path], tmp_path: Path
) -> None:
    from lamina.agents import Agent
    from lamina.models.scripted import ScriptedModel, tool_call
    from lamina.prompts import Step
    from lamina.prompts.tracing import Tracer
    from lamina.settings import Settings
    from lamina.telemetry import spans
    from lamina.telemetry.tracing import run_provider
    from lamina.tools import get_tool

    endpoint, out = receiver
    server = {"otlp_endpoint": f"{endpoint}/v1/traces"}
    home = tmp_path / "home"  # the same home and collector: only capture differs
    on = Settings(home=home, server=server, telemetry={"capture_content": True})
    off = Settings(home=home, server=server)
    for settings, task in ((on, "an open question"), (off, "my private plan")):
        model = ScriptedModel([tool_call("final_answer", answer=f"re {task}")], settings=settings)
        Agent(model, [get_tool("calculator")], settings=settings).run(task)  # agents' tracer
        tracer = Tracer(settings)
        Step("echo", str.upper).run(task, tracer=tracer)  # the chains' tracer
        tracer.flush()
        with spans.span("mine", "CHAIN", settings=settings, note=task):  # the spans module
            pass
        provider = run_provider(settings)
        assert provider is not None and provider.force_flush()
    exported = json.dumps(received(out))
    assert "an open question" in exported and "AN OPEN QUESTION" in exported
    assert "private" not in exported and "PRIVATE" not in exported


def test_a_down_collector_costs_a_warning_not_the_command(tmp_path: Path) -> None:
    env = {
        "LAMINA_HOME": str(tmp_path / "home"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    run = lamina("generate", "hi", "-m", "scripted", env=env)
    assert run.returncode == 0 and run.stdout.strip() == "hi"
    stored = (tmp_path / "home" / "traces").glob("spans-*.jsonl")
    assert any("lamina generate" in p.read_text() for p in stored)  # the local store has it


# -- Arize Phoenix ---------------------------------------------------------------------------


@pytest.fixture
def phoenix(tmp_path: Path) -> Iterator[str]:
    executable = os.environ.get("PHOENIX_EXECUTABLE")
    if not executable:
        pytest.skip(
            "set PHOENIX_EXECUTABLE to a phoenix executable (pip install arize-phoenix in a "
            "virtualenv of its own; docs/observability.md) to run the Phoenix check"
        )
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(tmp_path / "phoenix"),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(ports[0]),
        "PHOENIX_GRPC_PORT": str(ports[1]),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (tmp_path / "phoenix.log").open("w")
    process = subprocess.Popen([executable, "serve"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{ports[0]}"
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/v1/projects", timeout=2) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        assert wait_for(up, 120), (tmp_path / "phoenix.log").read_text()[-2000:]
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_phoenix_shows_the_retriever_span_with_its_documents(phoenix: str, tmp_path: Path) -> None:
    env = {
        "LAMINA_HOME": str(tmp_path / "home"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix,
        "LAMINA_TELEMETRY__CAPTURE_CONTENT": "true",
    }
    run = lamina("ask", QUESTION, "--docs", str(CORPUS), "--strategy", "select", env=env)
    assert run.returncode == 0, run.stderr

    def spans() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{phoenix}/v1/projects/default/spans?limit=50") as reply:
            data: list[dict[str, Any]] = json.load(reply)["data"]
        return data if len(data) >= 4 else []

    found = {s["name"]: s for s in wait_for(spans)}
    retriever = found["retrieve"]
    assert retriever["span_kind"] == "RETRIEVER"
    attrs = retriever["attributes"]
    assert any("GGML" in str(attrs.get(f"retrieval.documents.{i}.document.content", ""))
               for i in range(8))  # fmt: skip
    llm = found["llm.chat"]
    assert llm["span_kind"] == "LLM" and llm["attributes"]["llm.token_count.total"] > 0
    assert found["rag.ask"]["span_kind"] == "CHAIN"
    assert found["lamina ask"]["parent_id"] is None
