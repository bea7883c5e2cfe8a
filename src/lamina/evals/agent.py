"""Agents on a task suite: success, valid tool calls, steps and tokens (``lamina eval agent``).

A suite is JSON lines, one task each (``samples/agent_tasks.jsonl`` has 42)::

    {"id": "arithmetic-01", "kind": "arithmetic", "task": "What is 1234 * 5678?",
     "expect": ["7006652"], "tool": "calculator"}

A task succeeds when the answer contains one of its ``expect`` strings as a whole (not inside
a longer number or word; case and thousands separators ignored); a task of kind ``no-tool``
must also call no tool. A tool call is valid when it names a tool offered in that request and
its arguments parse as JSON and validate against that tool's schema (jsonschema);
:class:`RecordingModel` checks every call a model returns, ``final_answer`` included.
``benchmarks/agents.py`` scores other agents (smolagents) with the same functions.

>>> task = AgentTask(id="t", kind="arithmetic", task="2*32000?", expect=["64000"])
>>> succeeded(task, "It is 64,000.", ["calculator"]), succeeded(task, "64", [])
(True, False)
>>> call_problem("calc", '{"x": "1"}', {"calc": {"properties": {"x": {"type": "integer"}}}})
"schema: '1' is not of type 'integer'"
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lamina.errors import InvalidRequestError
from lamina.evals.run import EvalRun, RunMeta
from lamina.models.base import ChatModel, Prompt
from lamina.settings import Settings, get_settings
from lamina.tools import Tool
from lamina.types import ChatOptions, Completion, Delta

__all__ = [
    "SUITE_TOOLS",
    "AgentTask",
    "Outcome",
    "RecordingModel",
    "call_problem",
    "contains",
    "evaluate_agent",
    "load_tasks",
    "run_suite",
    "succeeded",
    "summarize",
    "to_run",
]

#: The tools every task of the bundled suite is offered: choosing one is part of the test.
SUITE_TOOLS = ("calculator", "python", "search_documents")


class AgentTask(BaseModel):
    """One task: what to ask, what a right answer contains, the tool it needs (if any)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    task: str = Field(min_length=1)
    expect: list[str] = Field(min_length=1)
    tool: str | None = None


def load_tasks(
    path: Path, kinds: Sequence[str] | None = None, limit: int | None = None
) -> list[AgentTask]:
    """The tasks of a JSON-lines suite, those of ``kinds`` only, the first ``limit``.

    Raises InvalidRequestError naming the file and line of anything that is not a task."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidRequestError(
            f"No task file at {str(path)!r}. Give a JSON-lines suite with --tasks FILE "
            f"(samples/agent_tasks.jsonl in the repository is one)."
        ) from None
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{str(path)!r} is not UTF-8 text (JSON lines).") from None
    tasks: list[AgentTask] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            task = AgentTask.model_validate_json(line)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidRequestError(
                f"{path}:{number} is not a task ({problems}). Each line is "
                f'{{"id", "kind", "task", "expect": [...], "tool"}}.'
            ) from None
        if task.id in seen:
            raise InvalidRequestError(f"{path}:{number}: the id {task.id!r} is used twice.")
        seen.add(task.id)
        tasks.append(task)
    if kinds:
        known = sorted({t.kind for t in tasks})
        unknown = sorted(set(kinds) - set(known))
        if unknown:
            raise InvalidRequestError(
                f"No task of kind {', '.join(unknown)} in {path}; its kinds: {', '.join(known)}."
            )
        tasks = [t for t in tasks if t.kind in kinds]
    tasks = tasks[:limit] if limit else tasks
    if not tasks:
        raise InvalidRequestError(f"{path} holds no tasks.")
    return tasks


def _normal(text: str) -> str:
    """Lower case, thousands separators gone: '64,000' and '64000' match.

    >>> _normal("It is 1,234,567 Apples")
    'it is 1234567 apples'
    """
    return re.sub(r"(?<=\d),(?=\d{3})", "", text).lower()


def contains(answer: str, expected: str) -> bool:
    """Whether ``expected`` occurs in ``answer`` as a whole: not inside a longer number or
    word, so "5" is not found in "call_78a5", "15" or "5.5" (case and thousands separators
    ignored).

    >>> contains("The answer is 5.", "5"), contains("call_788ecc5b", "5"), contains("5.5", "5")
    (True, False, False)
    >>> contains("It costs 64,000 USD", "64000"), contains("NF4-quantized", "nf4")
    (True, True)
    """
    pattern = rf"(?<![0-9a-z])(?<!\d\.){re.escape(_normal(expected))}(?![0-9a-z])(?!\.\d)"
    return re.search(pattern, _normal(answer)) is not None


def succeeded(task: AgentTask, answer: str | None, tools_used: Sequence[str]) -> bool:
    """Whether ``answer`` contains an expected string (:func:`contains`) and, for a
    ``no-tool`` task, no tool ran."""
    if not answer:
        return False
    found = any(contains(answer, e) for e in task.expect)
    if task.kind == "no-tool":
        return found and not tools_used
    return found


def call_problem(name: str, arguments: str, offered: Mapping[str, Any]) -> str | None:
    """What is wrong with a tool call, or None when it is valid: ``offered`` maps each tool
    offered in the request to its parameters schema."""
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


class RecordingModel:
    """A ChatModel that checks every tool call it returns against the tools it was offered
    (``calls``, ``valid`` and the ``invalid`` ones, described)."""

    def __init__(self, model: ChatModel) -> None:
        self._model = model
        self.calls = 0
        self.valid = 0
        self.invalid: list[str] = []

    def __getattr__(self, name: str) -> Any:
        # exact_tokens, count_request_tokens, settings: whatever the wrapped model offers
        return getattr(self._model, name)

    @property
    def name(self) -> str:
        return self._model.name

    @property
    def context_window(self) -> int:
        return self._model.context_window

    def count_tokens(self, prompt: Prompt) -> int:
        return self._model.count_tokens(prompt)

    def _check(self, result: Completion, options: ChatOptions | None) -> Completion:
        offered = {t.name: t.parameters for t in (options.offered_tools if options else [])}
        for call in result.tool_calls:
            self.calls += 1
            problem = call_problem(call.name, call.arguments, offered)
            if problem is None:
                self.valid += 1
            else:
                self.invalid.append(f"{call.name}({call.arguments}): {problem}")
        return result

    def chat(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Completion:
        result = self._model.chat(prompt, options, **overrides)
        return self._check(result, _options(options, overrides))

    async def achat(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Completion:
        result = await self._model.achat(prompt, options, **overrides)
        return self._check(result, _options(options, overrides))

    def stream(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Iterator[Delta]:
        return self._model.stream(prompt, options, **overrides)

    def astream(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> AsyncIterator[Delta]:
        return self._model.astream(prompt, options, **overrides)


def _options(options: ChatOptions | None, overrides: Mapping[str, Any]) -> ChatOptions | None:
    if not overrides:
        return options
    base = options.model_dump(exclude_unset=True) if options else {}
    return ChatOptions.model_validate({**base, **overrides})


@dataclass
class Outcome:
    """One task's result: the answer, whether it succeeded, what the agent did and spent."""

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


def run_suite(
    tasks: Sequence[AgentTask],
    model: ChatModel,
    tools: Sequence[Tool],
    *,
    settings: Settings | None = None,
    answer: Literal["tool", "text"] = "tool",
    max_steps: int = 8,
    timeout_s: float = 300.0,
    progress: Callable[[int, int, Outcome], None] | None = None,
) -> list[Outcome]:
    """Lamina's agent with ``model`` and ``tools`` on every task, each scored (``timeout_s``
    of wall clock per task, as ``AgentConfig.timeout_s``)."""
    from lamina.agents import Agent, AgentConfig

    recording = RecordingModel(model)
    outcomes = []
    for done, task in enumerate(tasks, 1):
        before = (recording.calls, recording.valid, len(recording.invalid))
        agent = Agent(
            recording,
            tools,
            config=AgentConfig(answer=answer, max_steps=max_steps, timeout_s=timeout_s),
            settings=settings,
        )
        started = time.perf_counter()
        result = agent.run(task.task)
        used = [s.tool or "" for s in result.tool_steps()]
        outcome = Outcome(
            id=task.id,
            kind=task.kind,
            success=succeeded(task, result.answer, used),
            answer=result.answer,
            stop_reason=result.stop_reason,
            model_calls=result.model_calls,
            tools_used=used,
            calls=recording.calls - before[0],
            valid_calls=recording.valid - before[1],
            tokens=result.usage.total_tokens,
            seconds=time.perf_counter() - started,
            invalid=recording.invalid[before[2] :],
        )
        outcomes.append(outcome)
        if progress is not None:
            progress(done, len(tasks), outcome)
    return outcomes


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The suite's numbers: success rate (overall and per kind), valid-call rate (None when
    no call was made), mean model calls, tool calls, tokens and seconds, stop reasons.

    >>> o = Outcome("a", "x", True, "4", "final_answer", 2, ["calculator"], 2, 2, 100, 1.0)
    >>> s = summarize([o, Outcome("b", "y", False, None, "max_steps", 8, [], 8, 7, 900, 3.0)])
    >>> s["success"], s["valid_calls"], s["by_kind"], s["mean_tokens"]
    (0.5, 0.9, {'x': 1.0, 'y': 0.0}, 500)
    """
    if not outcomes:
        raise InvalidRequestError("No outcomes to summarise: run at least one task.")
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


def to_run(outcomes: Sequence[Outcome], meta: RunMeta | None = None) -> EvalRun:
    """The outcomes as an eval run (``kind="agent"``): failed tasks first in reports."""
    items = []
    for o in outcomes:
        item = asdict(o)
        item["success"] = float(o.success)  # numeric, so reports rank and plot it
        items.append(item)
    return EvalRun(
        kind="agent",
        summary=summarize(outcomes),
        items=items,
        meta=meta or RunMeta(),
        primary="success",
    )


def evaluate_agent(
    tasks: Sequence[AgentTask],
    model: ChatModel,
    tools: Sequence[Tool],
    *,
    settings: Settings | None = None,
    answer: Literal["tool", "text"] = "tool",
    max_steps: int = 8,
    timeout_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalRun:
    """Run and score a suite: the :class:`EvalRun` ``lamina eval agent`` prints. Each task
    gets ``timeout_s`` of wall clock (default: the ``agents.timeout_s`` setting)."""
    if timeout_s is None:
        timeout_s = (settings or get_settings()).agents.timeout_s

    def step(done: int, total: int, outcome: Outcome) -> None:
        if progress is not None:
            progress(done, total)

    outcomes = run_suite(
        tasks,
        model,
        tools,
        settings=settings,
        answer=answer,
        max_steps=max_steps,
        timeout_s=timeout_s,
        progress=step,
    )
    meta = RunMeta(
        settings={
            "model": model.name,
            "tools": [t.name for t in tools],
            "answer": answer,
            "max_steps": max_steps,
            "timeout_s": timeout_s,
        }
    )
    return to_run(outcomes, meta)
