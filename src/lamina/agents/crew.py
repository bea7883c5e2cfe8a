"""Crews: several agents, each a role with its own tools and instructions, on one task.

A round is one hand-off: the supervisor picks the worker that acts next and what it should
do (or says the work is finished), that worker runs as an :class:`~lamina.agents.Agent`, and
its answer joins the crew's notes. A reviewer role, if the crew has one, then judges the
answer: approved ends the run, a rejection sends the work back with the reviewer's feedback.
The number of rounds is bounded (``max_rounds``); every hand-off and verdict is a step and a
span (``crew.handoff``, ``crew.review``) of the run's trace.

The supervisor is the model itself, answering in JSON constrained to the worker names
(``routing="supervisor"``), or a fixed order (``routing="sequential"``: each worker once, in
order, then the review), which small models follow more reliably.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lamina.agents.agent import Agent, AgentConfig
from lamina.agents.result import RunResult, Step, StopReason
from lamina.agents.templates import render
from lamina.agents.tracing import RunTracer
from lamina.errors import ConfigError, IncompleteOutputError
from lamina.models.base import ChatModel
from lamina.settings import Settings, get_settings
from lamina.tools.base import Tool
from lamina.tools.registry import ToolContext, get_tools
from lamina.types import Usage

__all__ = ["PRESETS", "Crew", "Role", "roles_from_spec"]


@dataclass
class Role:
    """A member of a crew. ``reviewer`` marks the one that judges answers instead of working."""

    name: str
    description: str
    instructions: str = ""
    tools: list[Tool] = field(default_factory=list)
    reviewer: bool = False


#: name -> (description, instructions, tool names, is the reviewer)
PRESETS: dict[str, tuple[str, str, list[str], bool]] = {
    "researcher": (
        "finds facts in the documents",
        "You are a researcher. Find the facts the task needs in the documents and report them.",
        ["search_documents"],
        False,
    ),
    "coder": (
        "computes things with Python and the calculator",
        "You are a programmer. Compute what the task needs.",
        ["calculator", "python"],
        False,
    ),
    "analyst": (
        "answers questions from the SQL database",
        "You are a data analyst. Query the database to answer.",
        ["sql"],
        False,
    ),
    "writer": (
        "writes the final answer from the work so far",
        "You are a writer. Write a short, clear answer to the task from the work so far.",
        [],
        False,
    ),
    "reviewer": (
        "checks that the answer is complete and correct",
        "You are a strict reviewer.",
        [],
        True,
    ),
}


def roles_from_spec(spec: str, context: ToolContext) -> list[Role]:
    """Roles from ``researcher,coder,reviewer`` (presets) or ``name:tool1+tool2`` (a custom
    worker with those tools).

    >>> [r.name for r in roles_from_spec("coder,reviewer", ToolContext())]
    ['coder', 'reviewer']
    """
    roles = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, _, tools = item.partition(":")
        if tools or name not in PRESETS:
            if not tools:
                raise ConfigError(
                    f"Unknown role {name!r}. Presets: {', '.join(PRESETS)}; or define one as "
                    f"NAME:TOOL1+TOOL2 (e.g. 'math:calculator+python')."
                )
            roles.append(
                Role(
                    name,
                    f"works with {tools.replace('+', ', ')}",
                    tools=get_tools(tools.split("+"), context),
                )
            )
            continue
        description, instructions, tool_names, reviewer = PRESETS[name]
        roles.append(
            Role(name, description, instructions, get_tools(tool_names, context), reviewer)
        )
    return roles


class Crew:
    """Workers, an optional reviewer and a supervisor, run for at most ``max_rounds``."""

    def __init__(
        self,
        model: ChatModel,
        roles: Sequence[Role],
        *,
        max_rounds: int = 4,
        routing: Literal["supervisor", "sequential"] = "supervisor",
        config: AgentConfig | None = None,
        settings: Settings | None = None,
        on_step: Callable[[Step], None] | None = None,
    ) -> None:
        self.workers = [r for r in roles if not r.reviewer]
        reviewers = [r for r in roles if r.reviewer]
        if not self.workers:
            raise ConfigError("A crew needs at least one worker role besides the reviewer.")
        if len(reviewers) > 1 or len({r.name for r in roles}) != len(roles):
            names = [r.name for r in roles]
            raise ConfigError(f"Role names must be unique, with at most one reviewer: {names}.")
        if max_rounds < 1:
            raise ConfigError(f"max_rounds must be at least 1, got {max_rounds}.")
        self.reviewer = reviewers[0] if reviewers else None
        self.model = model
        self.max_rounds = max_rounds
        self.routing = routing
        self.settings = settings or get_settings()
        self.config = config or AgentConfig.from_settings(self.settings.agents)
        self.on_step = on_step
        self.tracer = RunTracer(self.settings)

    def run(self, task: str) -> RunResult:
        started = time.monotonic()
        steps: list[Step] = []
        usage = Usage()
        calls = 0
        notes: list[str] = []
        feedback = ""
        answer: str | None = None
        reason: StopReason = "max_rounds"
        with self.tracer.span(
            "crew.run", task=task, roles=[r.name for r in self.workers], model=self.model.name
        ) as root:
            trace_id = self.tracer.trace_id(root)
            for round_number in range(1, self.max_rounds + 1):
                worker, subtask, routed = self._route(task, notes, feedback, round_number, answer)
                calls += routed
                if worker is None and answer is not None:  # the supervisor says it is done
                    approved, feedback, used = self._approved(task, notes, answer, steps)
                    calls += used
                    if approved:
                        reason = "final_answer"
                        break
                if worker is None:
                    worker, subtask = self.workers[0], task
                handoff = Step(index=0, kind="handoff", role=worker.name, observation=subtask)
                handoff.tool = worker.name
                self._add(steps, handoff)
                span = {"round": round_number, "role": worker.name, "subtask": subtask}
                with self.tracer.span("crew.handoff", **span):
                    result = self._work(worker, task, subtask, notes, feedback)
                for step in result.steps:
                    self._add(steps, step.model_copy(update={"role": worker.name}))
                usage = _add(usage, result.usage)
                calls += result.model_calls
                notes.append(f"{worker.name}: {result.answer or '(no answer)'}")
                answer = result.answer or answer
                if answer is None or not self._review_now(worker):
                    continue
                approved, feedback, used = self._approved(task, notes, answer, steps)
                calls += used
                if approved:
                    reason = "final_answer"
                    break
            root.set_attributes({"lamina.stop_reason": reason, "lamina.answer": answer or ""})
        self.tracer.flush()
        return RunResult(
            answer=answer,
            stop_reason=reason,
            detail="" if reason == "final_answer" else f"{self.max_rounds} rounds",
            steps=steps,
            usage=usage,
            model_calls=calls,
            seconds=time.monotonic() - started,
            trace_id=trace_id,
        )

    # -- routing --------------------------------------------------------------------------------

    def _route(
        self, task: str, notes: list[str], feedback: str, round_number: int, answer: str | None
    ) -> tuple[Role | None, str, int]:
        """(the next worker or None for 'finish', its sub-task, model calls used)."""
        if self.routing == "sequential" or (len(self.workers) == 1 and self.reviewer):
            worker = self.workers[(round_number - 1) % len(self.workers)]
            return worker, task, 0
        names = [w.name for w in self.workers]
        schema = {
            "type": "object",
            "properties": {
                "role": {"enum": [*names, "finish"]},
                "task": {"type": "string", "minLength": 1, "maxLength": 300},
            },
            "required": ["role", "task"],
        }
        prompt = render(
            "supervisor.j2",
            task=task,
            roles=[{"name": w.name, "description": w.description} for w in self.workers],
            notes=notes,
            feedback=feedback,
        )
        with self.tracer.span("crew.route", round=round_number) as span:
            try:
                reply = self.model.chat(prompt, temperature=0.0, max_tokens=200, json_schema=schema)
                choice = json.loads(reply.text)
                role, subtask = str(choice["role"]), str(choice["task"])
            except (IncompleteOutputError, json.JSONDecodeError, KeyError, TypeError):
                role, subtask = names[(round_number - 1) % len(names)], task  # unreadable: in turn
            span.set_attributes({"lamina.role": role, "lamina.subtask": subtask})
        if role == "finish":
            return (None, "", 1) if answer is not None else (self.workers[0], task, 1)
        worker = next((w for w in self.workers if w.name == role), self.workers[0])
        return worker, subtask, 1

    def _review_now(self, worker: Role) -> bool:
        """With a reviewer: after every worker (supervisor), or after the last (sequential)."""
        if self.reviewer is None:
            return self.routing == "sequential" and worker is self.workers[-1]
        return self.routing != "sequential" or worker is self.workers[-1]

    # -- working and reviewing ------------------------------------------------------------------

    def _work(
        self, worker: Role, task: str, subtask: str, notes: list[str], feedback: str
    ) -> RunResult:
        context = [f"The team's task: {task}"]
        if notes:
            context.append("Work so far:\n" + "\n".join(f"- {n}" for n in notes))
        if feedback:
            context.append(f"The reviewer sent the work back: {feedback}")
        instructions = "\n\n".join([worker.instructions, *context]).strip()
        agent = Agent(
            self.model,
            worker.tools,
            instructions=instructions,
            config=self.config,
            settings=self.settings,
            name=worker.name,
            on_step=self.on_step,
        )
        return agent.run(subtask)

    def _approved(
        self, task: str, notes: list[str], answer: str, steps: list[Step]
    ) -> tuple[bool, str, int]:
        """(approved, feedback, model calls used); without a reviewer every answer stands."""
        if self.reviewer is None:
            return True, "", 0
        schema = {
            "type": "object",
            "properties": {
                "approved": {"type": "boolean"},
                "feedback": {"type": "string", "maxLength": 300},
            },
            "required": ["approved", "feedback"],
        }
        prompt = render(
            "reviewer.j2",
            instructions=self.reviewer.instructions,
            task=task,
            notes=notes,
            answer=answer,
        )
        with self.tracer.span("crew.review", answer=answer) as span:
            try:
                reply = self.model.chat(prompt, temperature=0.0, max_tokens=200, json_schema=schema)
                verdict: dict[str, Any] = json.loads(reply.text)
                approved, feedback = bool(verdict["approved"]), str(verdict.get("feedback", ""))
            except (IncompleteOutputError, json.JSONDecodeError, KeyError, TypeError):
                approved, feedback = True, ""  # an unreadable verdict does not block the answer
            span.set_attributes({"lamina.approved": approved, "lamina.feedback": feedback})
        verdict_text = "approved" if approved else f"sent back: {feedback}"
        name = self.reviewer.name
        step = Step(index=0, kind="critic", role=name, tool=name, observation=verdict_text)
        step.ok = approved
        self._add(steps, step)
        return approved, feedback, 1

    def _add(self, steps: list[Step], step: Step) -> None:
        step.index = len(steps) + 1
        steps.append(step)
        if step.kind in ("handoff", "critic") and self.on_step is not None:
            self.on_step(step)


def _add(total: Usage, more: Usage) -> Usage:
    unknown = total.cost_usd is None or more.cost_usd is None
    return Usage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        cost_usd=None if unknown else (total.cost_usd or 0.0) + (more.cost_usd or 0.0),
    )
