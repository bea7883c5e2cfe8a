"""Agents on a task suite: success rate, valid tool calls, steps and tokens.

The suite is ``samples/agent_tasks.jsonl`` (42 tasks with checkable answers): arithmetic that
needs the calculator, facts from ``samples/corpus`` through ``search_documents``, small
computations with ``python``, two-step combinations, and questions to answer without a tool.
Every task is offered the same three tools (calculator, python, search_documents over an
index of the sample corpus built for the run), so choosing the tool is part of the test.

A task succeeds when the answer contains one of its expected strings (case and thousands
separators ignored); a no-tool task must also call no tool. A tool call is valid when it
names a tool offered in that request and its arguments parse as JSON and validate against
that tool's schema (jsonschema); every call a model makes is checked, ``final_answer``
included, by a wrapper around the model.

Systems, in one run:

(a) Lamina's agent on the bundled SmolLM2-135M (``--model``, default ``local``);
(b) smolagents' ``ToolCallingAgent`` driving the same model through ``lamina serve``:
    :func:`run_smolagents`, waiting for tool calling in the server (issue 11, server part);
(c) Lamina's agent on any OpenAI-compatible model, with ``--openai-model openai:NAME[@URL]``.

    python benchmarks/agents.py [--limit N] [--kinds arithmetic,documents] [--answer tool|text]
                                [--openai-model openai:gpt-4o-mini] [--smolagents URL]
                                [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from lamina.agents import Agent, AgentConfig
from lamina.models import get_model
from lamina.settings import get_settings
from lamina.tools import ToolContext, get_tools
from lamina.types import ChatOptions, Completion

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "samples" / "agent_tasks.jsonl"
CORPUS = ROOT / "samples" / "corpus"
TOOLS = ["calculator", "python", "search_documents"]


@dataclass
class Outcome:
    id: str
    kind: str
    success: bool
    answer: str | None
    stop_reason: str
    model_calls: int
    tools_used: list[str]
    calls: int
    valid_calls: int
    tokens: int
    seconds: float
    invalid: list[str] = field(default_factory=list)


class RecordingModel:
    """A ChatModel that checks every tool call it returns against the tools it was offered."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.calls = 0
        self.valid = 0
        self.invalid: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def chat(self, prompt: Any, options: ChatOptions | None = None, **overrides: Any) -> Completion:
        result: Completion = self._model.chat(prompt, options, **overrides)
        offered = {t.name: t.parameters for t in (options.tools if options else [])}
        for call in result.tool_calls:
            self.calls += 1
            problem = _invalid(call.name, call.arguments, offered)
            if problem is None:
                self.valid += 1
            else:
                self.invalid.append(f"{call.name}({call.arguments}): {problem}")
        return result


def _invalid(name: str, arguments: str, offered: dict[str, Any]) -> str | None:
    if name not in offered:
        return "not an offered tool"
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        return f"arguments are not JSON ({exc.msg})"
    try:
        jsonschema.validate(parsed, offered[name])
    except jsonschema.ValidationError as exc:
        return f"schema: {exc.message}"
    return None


def _normal(text: str) -> str:
    """Lower case, thousands separators gone: '64,000' and '64000' match."""
    return re.sub(r"(?<=\d),(?=\d{3})", "", text).lower()


def succeeded(task: dict[str, Any], answer: str | None, tools_used: list[str]) -> bool:
    if not answer:
        return False
    found = any(_normal(e) in _normal(answer) for e in task["expect"])
    if task["kind"] == "no-tool":
        return found and not tools_used
    return found


def load_tasks(path: Path, kinds: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
    tasks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if kinds:
        tasks = [t for t in tasks if t["kind"] in kinds]
    return tasks[:limit] if limit else tasks


def build_index(directory: Path) -> Path:
    from lamina.retrieval.index import Index

    with Index(directory) as index:
        index.ingest([CORPUS])
    return directory


def run_lamina(
    tasks: list[dict[str, Any]], spec: str, index: Path, answer: str = "tool"
) -> list[Outcome]:
    """(a) and (c): Lamina's agent with the model ``spec`` on every task."""
    settings = get_settings().model_copy(update={"cache": False})
    model = RecordingModel(get_model(spec, settings=settings))
    tools = get_tools(TOOLS, ToolContext(settings=settings, index=index))
    outcomes = []
    for task in tasks:
        before_calls, before_valid, before_invalid = model.calls, model.valid, len(model.invalid)
        agent = Agent(
            model,  # type: ignore[arg-type]
            tools,
            config=AgentConfig(answer=answer),  # type: ignore[arg-type]
            settings=settings,
        )
        started = time.perf_counter()
        result = agent.run(task["task"])
        used = [s.tool or "" for s in result.tool_steps()]
        outcome = Outcome(
            id=task["id"],
            kind=task["kind"],
            success=succeeded(task, result.answer, used),
            answer=result.answer,
            stop_reason=result.stop_reason,
            model_calls=result.model_calls,
            tools_used=used,
            calls=model.calls - before_calls,
            valid_calls=model.valid - before_valid,
            tokens=result.usage.total_tokens,
            seconds=time.perf_counter() - started,
            invalid=model.invalid[before_invalid:],
        )
        outcomes.append(outcome)
        mark = "ok " if outcome.success else "-- "
        print(
            f"  {mark}{task['id']:<14} {outcome.stop_reason:<13} {','.join(used) or '-':<32} "
            f"{(result.answer or '')[:60]!r}",
            file=sys.stderr,
            flush=True,
        )
    return outcomes


def run_smolagents(tasks: list[dict[str, Any]], server_url: str, index: Path) -> list[Outcome]:
    """(b): smolagents' ToolCallingAgent driving the bundled model through ``lamina serve``.

    To fill in once ``lamina serve`` accepts ``tools``: start ``lamina serve`` on the bundled
    model, point ``smolagents.OpenAIServerModel(model_id="lamina", api_base=server_url)`` at
    it, wrap calculator, python and search_documents as ``smolagents.Tool`` subclasses that
    call ``lamina.tools.run_tool``, run ``ToolCallingAgent(tools, model, max_steps=8)`` on
    each task, and read the calls from the server's responses (or the agent's memory steps)
    to fill the same :class:`Outcome` fields, validity checked with :func:`_invalid`.
    """
    raise NotImplementedError(
        "(b) needs tool calling in `lamina serve` (issue 11, server part); not run."
    )


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    calls = sum(o.calls for o in outcomes)
    kinds = sorted({o.kind for o in outcomes})
    return {
        "tasks": len(outcomes),
        "success": sum(o.success for o in outcomes) / len(outcomes),
        "valid_calls": (sum(o.valid_calls for o in outcomes) / calls) if calls else None,
        "calls": calls,
        "mean_model_calls": statistics.mean(o.model_calls for o in outcomes),
        "mean_tool_calls": statistics.mean(len(o.tools_used) for o in outcomes),
        "mean_tokens": statistics.mean(o.tokens for o in outcomes),
        "mean_seconds": statistics.mean(o.seconds for o in outcomes),
        "by_kind": {
            k: sum(o.success for o in outcomes if o.kind == k)
            / sum(1 for o in outcomes if o.kind == k)
            for k in kinds
        },
        "stop_reasons": dict(Counter(o.stop_reason for o in outcomes)),
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=Path, default=TASKS)
    parser.add_argument("--kinds", help="Comma-separated task kinds to run.")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--model", default="local", help="(a): the model spec")
    parser.add_argument("--answer", default="tool", choices=["tool", "text"])
    parser.add_argument("--openai-model", help="(c): e.g. openai:gpt-4o-mini or NAME@URL")
    parser.add_argument("--smolagents", metavar="URL", help="(b): a running lamina serve")
    parser.add_argument("--json", type=Path, help="Write every outcome here.")
    args = parser.parse_args()
    tasks = load_tasks(args.tasks, args.kinds.split(",") if args.kinds else None, args.limit)
    import llama_cpp

    print(
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; Python {platform.python_version()}, llama-cpp-python "
        f"{llama_cpp.__version__}; {len(tasks)} tasks",
        file=sys.stderr,
    )
    results: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="lamina-agent-bench-") as tmp:
        index = build_index(Path(tmp) / "index")
        name = f"(a) lamina agent, {args.model}"
        print(name, file=sys.stderr)
        ran = run_lamina(tasks, args.model, index, args.answer)
        results[name], outcomes[name] = summary(ran), [asdict(o) for o in ran]
        name = "(b) smolagents ToolCallingAgent via lamina serve"
        try:
            if not args.smolagents:
                raise NotImplementedError("give --smolagents URL of a lamina serve with tools")
            ran = run_smolagents(tasks, args.smolagents, index)
            results[name], outcomes[name] = summary(ran), [asdict(o) for o in ran]
        except NotImplementedError as exc:
            results[name] = {"skipped": str(exc)}
        name = f"(c) lamina agent, {args.openai_model or 'an OpenAI-compatible model'}"
        if args.openai_model:
            print(name, file=sys.stderr)
            ran = run_lamina(tasks, args.openai_model, index, args.answer)
            results[name], outcomes[name] = summary(ran), [asdict(o) for o in ran]
        else:
            results[name] = {"skipped": "none configured (--openai-model)"}
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "outcomes": outcomes}, indent=2))


if __name__ == "__main__":
    main()
