"""Every run is a trace with OpenInference attributes: the model, retrieval, RAG, agent and CLI
layers, read back from the real local trace store; content only when capture is on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lamina.agents import Agent
from lamina.cli import app
from lamina.errors import ConfigError
from lamina.models.embeddings.hashing import HashEmbedder
from lamina.models.scripted import ScriptedModel, tool_call
from lamina.rag.pipeline import RagConfig, RagPipeline
from lamina.retrieval.index import Index
from lamina.settings import Settings, get_settings
from lamina.telemetry import spans
from lamina.telemetry.tracing import otlp_endpoint, read_spans, run_provider, span_tree
from lamina.tools import get_tool
from lamina.types import Message

SECRET = "sk-abcdefghijklmnopqrstuv"


def stored(settings: Settings, trace_id: str | None = None) -> list[dict[str, Any]]:
    return read_spans(settings.traces_dir, limit=10_000, trace_id=trace_id)


def named(records: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [record] = [r for r in records if r["name"] == name]
    return record


@pytest.fixture
def quiet(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", cache=False)


@pytest.fixture
def capturing(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", cache=False, telemetry={"capture_content": True})


# -- the model layer ------------------------------------------------------------------------------


def test_a_chat_call_is_an_llm_span_with_token_counts_and_no_text_by_default(
    quiet: Settings,
) -> None:
    model = ScriptedModel(["Paris is the capital."], settings=quiet)
    reply = model.chat([Message.system("Be brief."), Message.user("Capital of France?")])
    attrs = named(stored(quiet), "llm.chat")["attributes"]
    assert attrs["openinference.span.kind"] == "LLM"
    assert (attrs["llm.provider"], attrs["llm.model_name"]) == ("scripted", "echo")
    assert attrs["llm.token_count.prompt"] == reply.usage.prompt_tokens > 0
    assert attrs["llm.token_count.completion"] == reply.usage.completion_tokens == 4
    assert attrs["llm.token_count.total"] == reply.usage.total_tokens
    assert json.loads(attrs["llm.invocation_parameters"])["max_tokens"] == 256
    text = json.dumps(attrs)
    assert "Paris" not in text and "France" not in text and "Be brief" not in text
    assert not any(k.startswith(("llm.input_messages", "input.value", "output.")) for k in attrs)


def test_with_capture_the_messages_are_flattened_and_secrets_redacted(
    capturing: Settings,
) -> None:
    model = ScriptedModel([tool_call("calculator", expression="2+2")], settings=capturing)
    model.chat(
        [Message.system("Be brief."), Message.user(f"My key is {SECRET}. 2+2?")],
        tools=[{"name": "calculator"}],
    )
    attrs = named(stored(capturing), "llm.chat")["attributes"]
    assert attrs["llm.input_messages.0.message.role"] == "system"
    assert attrs["llm.input_messages.0.message.content"] == "Be brief."
    assert attrs["llm.input_messages.1.message.content"] == "My key is [redacted]. 2+2?"
    assert SECRET not in json.dumps(attrs)
    assert attrs["llm.output_messages.0.message.role"] == "assistant"
    call = "llm.output_messages.0.message.tool_calls.0.tool_call.function"
    assert attrs[f"{call}.name"] == "calculator"
    assert json.loads(attrs[f"{call}.arguments"]) == {"expression": "2+2"}
    assert attrs["llm.tools.0.tool.name"] == "calculator"
    assert attrs["input.mime_type"] == "application/json"


def test_a_stream_is_recorded_once_complete_and_an_abandoned_one_leaves_no_context(
    capturing: Settings,
) -> None:
    model = ScriptedModel(["one two three", "never read"], settings=capturing)
    text = "".join(d.text for d in model.stream("Count."))
    attrs = named(stored(capturing), "llm.stream")["attributes"]
    assert attrs["output.value"] == text == "one two three"
    assert attrs["llm.token_count.completion"] == 3
    with spans.span("outer", "CHAIN", settings=capturing) as outer:
        deltas = model.stream("Again.")
        next(deltas)
        deltas.close()  # abandoned mid-way: no span, and the current span is still ours
        assert spans.current_trace_id() == outer.trace_id
    assert spans.current_trace_id() is None


def test_async_calls_are_traced_too(quiet: Settings) -> None:
    model = ScriptedModel(["a", "b c"], settings=quiet)

    async def both() -> None:
        await model.achat("x")
        async for _ in model.astream("y"):
            pass

    asyncio.run(both())
    names = sorted(r["name"] for r in stored(quiet))
    assert names == ["llm.chat", "llm.stream"]


def test_a_failed_call_is_an_error_span(quiet: Settings) -> None:
    model = ScriptedModel([ConfigError("no such model")], settings=quiet)
    with pytest.raises(ConfigError):
        model.chat("x")
    record = named(stored(quiet), "llm.chat")
    assert record["status"] == "ERROR"


# -- retrieval and RAG ----------------------------------------------------------------------------

GGUF = "GGUF is the file format of llama.cpp. It replaced the older GGML format in August 2023."
LORA = "LoRA trains two small low-rank matrices per layer instead of all the weights."


@pytest.fixture
def index(tmp_path: Path) -> Any:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "gguf.md").write_text(GGUF)
    (folder / "lora.md").write_text(LORA)
    with Index(tmp_path / "index", embedder=HashEmbedder()) as opened:
        opened.ingest([folder])
        yield opened


def test_a_rag_answer_is_one_trace_chain_retriever_llm(index: Index) -> None:
    settings = get_settings()
    pipeline = RagPipeline(
        index,
        ScriptedModel(['{"sentence": 1}'], settings=settings),
        config=RagConfig(strategy="select", min_relevance=0.0),
        embedder=HashEmbedder(),
    )
    answer = pipeline.ask("Which format did GGUF replace?")
    records = stored(settings)
    root = named(records, "rag.ask")
    tree = [(d, r["name"]) for d, r in span_tree(stored(settings, root["trace_id"]))]
    assert tree == [(0, "rag.ask"), (1, "retrieve"), (2, "embed.query"), (1, "llm.chat")]
    embedded = named(records, "embed.query")["attributes"]
    assert embedded["openinference.span.kind"] == "EMBEDDING"
    assert embedded["embedding.model_name"] == index.embedder.name
    assert "embedding.embeddings.0.embedding.text" not in embedded  # capture is off
    assert root["attributes"]["openinference.span.kind"] == "CHAIN"
    assert root["attributes"]["lamina.found"] is True
    retrieved = named(records, "retrieve")["attributes"]
    assert retrieved["openinference.span.kind"] == "RETRIEVER"
    hits = range(retrieved["lamina.hits"])
    ids = [retrieved[f"retrieval.documents.{i}.document.id"] for i in hits]
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    assert retrieved["retrieval.documents.0.document.score"] > 0
    assert "retrieval.documents.0.document.content" not in retrieved  # capture is off
    assert "GGML" in answer.answer


def test_with_capture_the_retriever_span_holds_document_text(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMINA_TELEMETRY__CAPTURE_CONTENT", "true")
    get_settings.cache_clear()
    index.settings = get_settings()
    index.search("Which format did GGUF replace?", 2)
    retrieved = named(stored(index.settings), "retrieve")["attributes"]
    assert retrieved["input.value"] == "Which format did GGUF replace?"
    assert retrieved["retrieval.documents.0.document.content"].startswith("GGUF is the file")
    meta = json.loads(retrieved["retrieval.documents.0.document.metadata"])
    assert meta["source"].endswith("gguf.md")
    embedded = named(stored(index.settings), "embed.query")["attributes"]
    assert embedded["embedding.embeddings.0.embedding.text"] == "Which format did GGUF replace?"


# -- agents and the CLI ---------------------------------------------------------------------------


def test_an_agent_run_has_agent_llm_and_tool_kinds(capturing: Settings) -> None:
    model = ScriptedModel(
        [tool_call("calculator", expression="6 * 7"), tool_call("final_answer", answer="42")],
        settings=capturing,
    )
    result = Agent(model, [get_tool("calculator")], settings=capturing).run("6 * 7?")
    records = stored(capturing, result.trace_id)
    kinds = {r["name"]: r["attributes"].get("openinference.span.kind") for r in records}
    assert kinds == {"agent.run": "AGENT", "agent.model": "CHAIN", "llm.chat": "LLM",
                     "agent.tool": "TOOL"}  # fmt: skip
    run = named(records, "agent.run")["attributes"]
    assert (run["input.value"], run["output.value"]) == ("6 * 7?", "42")
    used = named(records, "agent.tool")["attributes"]
    assert used["tool.name"] == "calculator"
    assert json.loads(used["tool.parameters"]) == {"expression": "6 * 7"}
    assert used["output.value"] == "42"


def test_a_tool_span_without_capture_names_the_tool_only(quiet: Settings) -> None:
    model = ScriptedModel(
        [tool_call("calculator", expression="6 * 7"), tool_call("final_answer", answer="42")],
        settings=quiet,
    )
    result = Agent(model, [get_tool("calculator")], settings=quiet).run("6 * 7?")
    used = named(stored(quiet, result.trace_id), "agent.tool")["attributes"]
    assert used["tool.name"] == "calculator"
    assert "tool.parameters" not in used and "output.value" not in used


def test_each_cli_command_is_one_trace(tmp_path: Path) -> None:
    home = tmp_path / "cli-home"
    env = {"LAMINA_HOME": str(home), "LAMINA_CACHE": "false"}
    result = CliRunner().invoke(app, ["generate", "Hello", "-m", "scripted:echo"], env=env)
    assert result.exit_code == 0, result.output
    records = read_spans(home / "traces")
    root = named(records, "lamina generate")
    assert root["parent_id"] is None
    assert root["attributes"]["openinference.span.kind"] == "CHAIN"
    assert "input.value" not in root["attributes"]  # the command line is content
    llm = [r for r in records if r["name"].startswith("llm.")]
    assert llm and all(r["trace_id"] == root["trace_id"] for r in llm)
    # reading the trace store does not add to it
    before = len(read_spans(home / "traces"))
    listed = CliRunner().invoke(app, ["traces", "show", root["trace_id"]], env=env)
    assert listed.exit_code == 0, listed.output
    assert len(read_spans(home / "traces")) == before


def test_a_failing_command_is_an_error_trace(tmp_path: Path) -> None:
    home = tmp_path / "cli-home"
    result = CliRunner().invoke(
        app, ["generate", "Hello", "-m", "nosuchbackend:x"], env={"LAMINA_HOME": str(home)}
    )
    assert result.exit_code == 1
    root = named(read_spans(home / "traces"), "lamina generate")
    assert root["status"] == "ERROR"


# -- where spans go -------------------------------------------------------------------------------


def test_no_endpoint_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert otlp_endpoint(Settings()) is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")
    assert otlp_endpoint(Settings()) == "http://127.0.0.1:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:6006/v1/traces")
    assert otlp_endpoint(Settings()) == "http://127.0.0.1:6006/v1/traces"
    setting = Settings(server={"otlp_endpoint": "http://collector:4318/v1/traces"})
    assert otlp_endpoint(setting) == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert otlp_endpoint(Settings()) is None


def test_a_grpc_protocol_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match=r"'grpc'.*http/protobuf"):
        otlp_endpoint(Settings())


def test_nothing_is_recorded_when_spans_have_nowhere_to_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = Settings(home=tmp_path / "off", server={"local_traces": False})
    assert run_provider(off) is None
    ScriptedModel(["x"], settings=off).chat("y")
    assert not (tmp_path / "off" / "traces").exists()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    on = Settings(home=tmp_path / "on")
    with spans.span("x", "CHAIN", settings=on) as run:
        assert not run.recording and run.trace_id is None
    ScriptedModel(["x"], settings=on).chat("y")
    assert stored(on) == []


def test_traces_list_and_show_render_runs_with_tokens(tmp_path: Path) -> None:
    env = {"LAMINA_HOME": str(tmp_path / "cli-home"), "LAMINA_CACHE": "false"}
    for prompt in ("one", "two three"):
        made = CliRunner().invoke(app, ["generate", prompt, "-m", "scripted:echo"], env=env)
        assert made.exit_code == 0, made.output
    listed = CliRunner().invoke(app, ["traces", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["name"], r["spans"], r["error"]) for r in rows] == [
        ("lamina generate", 2, False),
        ("lamina generate", 2, False),
    ]
    for row in rows:
        [llm] = [s for s in read_spans(tmp_path / "cli-home" / "traces", trace_id=row["trace_id"])
                 if s["name"] == "llm.stream"]  # fmt: skip
        attrs = llm["attributes"]
        used = attrs["llm.token_count.prompt"] + attrs["llm.token_count.completion"]
        assert row["tokens"] == used > 0
    table = CliRunner().invoke(app, ["traces", "list", "--limit", "1"], env=env)
    assert rows[-1]["trace_id"] in table.output and rows[0]["trace_id"] not in table.output
    shown = CliRunner().invoke(app, ["traces", "show", rows[-1]["trace_id"]], env=env)
    lines = shown.output.splitlines()
    assert lines[0].startswith("lamina generate ") and "[CHAIN]" in lines[0]
    assert (
        lines[1].startswith("  llm.stream ")
        and f"[LLM] {attrs['llm.token_count.prompt']}+" in lines[1]
    )


def test_chain_steps_and_model_calls_in_them_nest_with_kinds(quiet: Settings) -> None:
    from lamina.prompts import Step
    from lamina.prompts.tracing import Tracer

    model = ScriptedModel(["forty-two"], settings=quiet)
    tracer = Tracer(quiet)
    chain = Step("ask", lambda x: model.chat(x).text).then(Step("shout", str.upper))
    result = chain.run("6 * 7?", tracer=tracer)
    tracer.flush()
    records = stored(quiet, result.trace_id)
    tree = [(d, r["name"], r["attributes"]["openinference.span.kind"])
            for d, r in span_tree(records)]  # fmt: skip
    assert tree == [
        (0, "chain.run", "CHAIN"),
        (1, "chain.step", "CHAIN"),
        (2, "llm.chat", "LLM"),
        (1, "chain.step", "CHAIN"),
    ]


def test_doctor_lists_the_collector_and_an_online_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    from lamina.doctor import _egress

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert _egress(Settings(telemetry={"wandb": True})) == []  # offline W&B sends nothing
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:pw@phoenix.lan:6006")
    monkeypatch.setenv("WANDB_MODE", "online")
    assert _egress(Settings(telemetry={"wandb": True})) == [
        "traces (OTEL_EXPORTER_OTLP_*): http://***@phoenix.lan:6006/v1/traces",
        "tuning and eval runs (telemetry.wandb, online): your W&B server",
    ]
