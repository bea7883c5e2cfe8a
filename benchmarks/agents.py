r"""Agents on a task suite: success rate, valid tool calls, steps and tokens.

The suite is ``samples/agent_tasks.jsonl`` (42 tasks with checkable answers): arithmetic that
needs the calculator, facts from ``samples/corpus`` through ``search_documents``, small
computations with ``python``, two-step combinations, and questions to answer without a tool.
Every task is offered the same three tools (calculator, python, search_documents over an
index of the sample corpus built for the run), so choosing the tool is part of the test.

Scoring is :mod:`lamina.evals.agent` (what ``lamina eval agent`` runs): a task succeeds when
the answer contains one of its expected strings (case and thousands separators ignored); a
no-tool task must also call no tool. A tool call is valid when it names a tool offered in that
request and its arguments parse as JSON and validate against the schema that request gave
(jsonschema); every call a model makes is checked, ``final_answer`` included.

Systems, in one run, each with at most ``--max-steps`` (8) model calls per task:

(a) Lamina's agent on the bundled SmolLM2-135M (``--model``, default ``local``);
(b) smolagents' ``ToolCallingAgent`` with ``OpenAIServerModel`` driving the same model through
    a ``lamina serve`` this script starts (or ``--smolagents URL`` of a running one), the same
    three Lamina tools wrapped as ``smolagents.Tool``\ s; ``--no-smolagents`` skips it;
(c) Lamina's agent on any OpenAI-compatible model, with ``--openai-model openai:NAME[@URL]``.

Both systems run with the response cache off. On a machine other work keeps busy, set
``LAMINA_LOCAL__N_THREADS=1`` (both systems read it): llama.cpp's threads wait for each other,
and with every core contended a call can take ten times longer than on one thread.

    python benchmarks/agents.py [--limit N] [--per-kind N] [--kinds arithmetic,documents]
                                [--answer tool|text] [--max-steps 8] [--json results.json]
                                [--openai-model openai:gpt-4o-mini]
                                [--smolagents URL | --no-smolagents]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from lamina.evals.agent import (
    SUITE_TOOLS,
    AgentTask,
    Outcome,
    call_problem,
    load_tasks,
    run_suite,
    succeeded,
    summarize,
)
from lamina.models import get_model
from lamina.settings import get_settings
from lamina.tools import Tool, ToolContext, get_tools, run_tool

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "samples" / "agent_tasks.jsonl"
CORPUS = ROOT / "samples" / "corpus"


def build_index(directory: Path) -> Path:
    from lamina.retrieval.index import Index

    with Index(directory) as index:
        index.ingest([CORPUS])
    return directory


def _show(outcome: Outcome) -> None:
    mark = "ok " if outcome.success else "-- "
    print(
        f"  {mark}{outcome.id:<14} {outcome.stop_reason:<13} "
        f"{','.join(outcome.tools_used) or '-':<32} {(outcome.answer or '')[:60]!r}",
        file=sys.stderr,
        flush=True,
    )


def run_lamina(
    tasks: list[AgentTask],
    spec: str,
    index: Path,
    answer: str = "tool",
    max_steps: int = 8,
    timeout_s: float = 300.0,
) -> list[Outcome]:
    """(a) and (c): Lamina's agent with the model ``spec`` on every task."""
    settings = get_settings().model_copy(update={"cache": False})
    model = get_model(spec, settings=settings)
    tools = get_tools(SUITE_TOOLS, ToolContext(settings=settings, index=index))
    return run_suite(
        tasks,
        model,
        tools,
        settings=settings,
        answer=answer,  # type: ignore[arg-type]
        max_steps=max_steps,
        timeout_s=timeout_s,
        progress=lambda done, total, outcome: _show(outcome),
    )


# -- (b) smolagents ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def lamina_serve(spec: str, home: Path) -> Iterator[str]:
    """A ``lamina serve`` process on a free loopback port, response cache off."""
    port = _free_port()
    env = {**os.environ, "LAMINA_HOME": str(home), "LAMINA_CACHE": "false"}
    command = [sys.executable, "-m", "lamina", "serve", "--port", str(port), "--model", spec]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"lamina serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("lamina serve did not start within 120 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_SMOL_TYPES = {"string", "integer", "number", "boolean", "array", "object"}


def smolagents_tool(tool: Tool) -> Any:
    """A Lamina tool as a ``smolagents.Tool``: inputs from its schema (smolagents keeps only
    each argument's type and description), run through ``lamina.tools.run_tool``."""
    from smolagents import Tool as SmolTool

    properties = tool.parameters.get("properties", {})
    required = set(tool.parameters.get("required", []))
    inputs = {}
    for name, schema in properties.items():
        kind = schema.get("type", "string")
        spec: dict[str, Any] = {
            "type": kind if kind in _SMOL_TYPES else "any",
            "description": schema.get("description", name),
        }
        if name not in required:
            spec["nullable"] = True
        inputs[name] = spec

    class Wrapped(SmolTool):  # type: ignore[misc]
        skip_forward_signature_validation = True

        def forward(self, **arguments: Any) -> str:
            given = {k: v for k, v in arguments.items() if v is not None}
            return run_tool(tool, given).observation

    Wrapped.name = tool.name
    Wrapped.description = " ".join(tool.description.split())
    Wrapped.inputs = inputs
    Wrapped.output_type = "string"
    return Wrapped()


def run_smolagents(
    tasks: list[AgentTask], server_url: str, index: Path, max_steps: int = 8
) -> list[Outcome]:
    """(b): smolagents' ToolCallingAgent driving the model behind ``server_url``.

    Every response of the server is checked: each tool call against the schema smolagents
    sent in that request (:func:`call_problem`), tokens from its usage."""
    from smolagents import OpenAIServerModel, ToolCallingAgent
    from smolagents.models import get_tool_json_schema

    settings = get_settings().model_copy(update={"cache": False})
    tools = [
        smolagents_tool(t)
        for t in get_tools(SUITE_TOOLS, ToolContext(settings=settings, index=index))
    ]

    class Recording(OpenAIServerModel):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.reset()

        def reset(self) -> None:
            self.requests = self.calls = self.valid = self.tokens = 0
            self.invalid: list[str] = []

        def generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
            offered = kwargs.get("tools_to_call_from") or []
            schemas = {t.name: get_tool_json_schema(t)["function"]["parameters"] for t in offered}
            reply = super().generate(messages, *args, **kwargs)
            self.requests += 1
            raw = reply.raw
            if raw is not None and raw.usage is not None:
                self.tokens += raw.usage.total_tokens
            for call in (raw.choices[0].message.tool_calls or []) if raw is not None else []:
                self.calls += 1
                problem = call_problem(call.function.name, call.function.arguments, schemas)
                if problem is None:
                    self.valid += 1
                else:
                    self.invalid.append(
                        f"{call.function.name}({call.function.arguments}): {problem}"
                    )
            return reply

    model = Recording(
        model_id="lamina",
        api_base=f"{server_url}/v1",
        api_key="unused",
        temperature=0,
        max_tokens=300,  # the reply budget of Lamina's agent (AgentConfig.reply_tokens)
        client_kwargs={"timeout": 600, "max_retries": 0},
    )
    outcomes = []
    for task in tasks:
        model.reset()
        agent = ToolCallingAgent(tools=tools, model=model, max_steps=max_steps, verbosity_level=-1)
        started = time.perf_counter()
        crashed = None
        try:
            answer: str | None = str(agent.run(task.task))
        except Exception as exc:  # an agent that crashes has no answer; the run goes on
            answer, crashed = None, type(exc).__name__
            print(f"  smolagents raised {crashed}: {exc}", file=sys.stderr)
        steps = agent.memory.steps
        used = [
            c.name
            for s in steps
            for c in (getattr(s, "tool_calls", None) or [])
            if c.name != "final_answer"
        ]
        final = any(getattr(s, "is_final_answer", False) for s in steps)
        outcome = Outcome(
            id=task.id,
            kind=task.kind,
            success=succeeded(task, answer, used),
            answer=answer,
            stop_reason=f"error ({crashed})"
            if crashed
            else "final_answer"
            if final
            else "max_steps",
            model_calls=model.requests,
            tools_used=used,
            calls=model.calls,
            valid_calls=model.valid,
            tokens=model.tokens,
            seconds=time.perf_counter() - started,
            invalid=list(model.invalid),
        )
        outcomes.append(outcome)
        _show(outcome)
    return outcomes


def table(results: dict[str, dict[str, Any]]) -> str:
    kinds = sorted({k for r in results.values() for k in r.get("by_kind", {})})
    head = ["system", "success", "valid calls", "model calls", "tool calls", "tokens", "s/task"]
    lines = [" | ".join(head + kinds), " | ".join(["---"] * (len(head) + len(kinds)))]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"{name} | not run: {r['skipped']}")
            continue
        valid = "n/a" if r["valid_calls"] is None else f"{r['valid_calls']:.0%} of {r['calls']}"
        row = [
            name,
            f"{r['success']:.0%} ({round(r['success'] * r['tasks'])}/{r['tasks']})",
            valid,
            f"{r['mean_model_calls']:.1f}",
            f"{r['mean_tool_calls']:.1f}",
            f"{r['mean_tokens']:.0f}",
            f"{r['mean_seconds']:.1f}",
        ]
        row += [f"{r['by_kind'].get(k, 0):.0%}" for k in kinds]
        lines.append(" | ".join(row))
    return "\n".join(lines)


def _rank(tasks: list[AgentTask], i: int) -> int:
    """How many tasks of the same kind come before task ``i``."""
    return sum(1 for t in tasks[:i] if t.kind == tasks[i].kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=Path, default=TASKS)
    parser.add_argument("--kinds", help="Comma-separated task kinds to run.")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--per-kind", type=int, help="The first N tasks of each kind.")
    parser.add_argument("--model", default="local", help="(a) and (b): the model spec")
    parser.add_argument("--answer", default="tool", choices=["tool", "text"])
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="(a), (c): seconds per task (smolagents has no such limit, so the default is high)",
    )
    parser.add_argument("--openai-model", help="(c): e.g. openai:gpt-4o-mini or NAME@URL")
    parser.add_argument("--smolagents", metavar="URL", help="(b): a running lamina serve")
    parser.add_argument("--no-smolagents", action="store_true", help="Skip (b).")
    parser.add_argument("--json", type=Path, help="Write every outcome here.")
    args = parser.parse_args()
    tasks = load_tasks(args.tasks, args.kinds.split(",") if args.kinds else None, args.limit)
    if args.per_kind:
        tasks = [t for i, t in enumerate(tasks) if _rank(tasks, i) < args.per_kind]
    versions = ", ".join(
        f"{p} {metadata.version(p)}" for p in ("lamina", "llama_cpp_python", "smolagents", "openai")
    )
    print(
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; llama.cpp threads {get_settings().local.n_threads or 'all'}; "
        f"Python {platform.python_version()}, {versions}; {len(tasks)} tasks",
        file=sys.stderr,
    )
    results: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="lamina-agent-bench-") as tmp:
        index = build_index(Path(tmp) / "index")
        name = f"(a) lamina agent, {args.model}"
        print(name, file=sys.stderr)
        ran = run_lamina(tasks, args.model, index, args.answer, args.max_steps, args.timeout)
        results[name], outcomes[name] = summarize(ran), [asdict(o) for o in ran]
        name = f"(b) smolagents ToolCallingAgent, {args.model} via lamina serve"
        if args.no_smolagents:
            results[name] = {"skipped": "--no-smolagents"}
        else:
            print(name, file=sys.stderr)
            if args.smolagents:
                ran = run_smolagents(tasks, args.smolagents, index, args.max_steps)
            else:
                with lamina_serve(args.model, Path(tmp) / "home") as url:
                    ran = run_smolagents(tasks, url, index, args.max_steps)
            results[name], outcomes[name] = summarize(ran), [asdict(o) for o in ran]
        name = f"(c) lamina agent, {args.openai_model or 'an OpenAI-compatible model'}"
        if args.openai_model:
            print(name, file=sys.stderr)
            ran = run_lamina(
                tasks, args.openai_model, index, args.answer, args.max_steps, args.timeout
            )
            results[name], outcomes[name] = summarize(ran), [asdict(o) for o in ran]
        else:
            results[name] = {"skipped": "none configured (--openai-model)"}
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "outcomes": outcomes}, indent=2))


if __name__ == "__main__":
    main()
