"""Crews with the scripted model: routing, hand-offs, a reviewer sending work back, bounded
rounds, traced hand-offs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lamina.agents.crew import Crew, Role, roles_from_spec
from lamina.errors import ConfigError
from lamina.models.scripted import ScriptedModel, tool_call
from lamina.settings import Settings
from lamina.telemetry.tracing import read_spans, span_tree
from lamina.tools import ToolContext, get_tool


def route(role: str, task: str) -> str:
    return json.dumps({"role": role, "task": task})


def verdict(approved: bool, feedback: str = "") -> str:
    return json.dumps({"approved": approved, "feedback": feedback})


def answer(text: str) -> Any:
    return tool_call("final_answer", answer=text)


def team(settings: Settings) -> list[Role]:
    return [
        Role("math", "computes numbers", "You compute.", [get_tool("calculator")]),
        Role("writer", "writes sentences", "You write."),
        Role("reviewer", "checks answers", "Be strict.", reviewer=True),
    ]


def test_supervisor_routes_reviewer_sends_back_then_approves(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, cache=False)
    model = ScriptedModel(
        [
            route("math", "Compute 6 * 7."),
            tool_call("calculator", expression="6 * 7"),
            answer("42"),
            verdict(False, "Answer in a full sentence."),
            route("writer", "Write the result as a sentence."),
            answer("Six times seven is 42."),
            verdict(True),
        ],
        settings=settings,
    )
    crew = Crew(model, team(settings), settings=settings)
    result = crew.run("What is 6 * 7? Answer in a sentence.")
    assert (result.answer, result.stop_reason) == ("Six times seven is 42.", "final_answer")
    kinds = [(s.kind, s.role) for s in result.steps]
    assert kinds == [
        ("handoff", "math"),
        ("tool", "math"),
        ("answer", "math"),
        ("critic", "reviewer"),
        ("handoff", "writer"),
        ("answer", "writer"),
        ("critic", "reviewer"),
    ]
    assert result.steps[3].observation == "sent back: Answer in a full sentence."
    # the supervisor and the writer saw the work so far and the reviewer's feedback
    supervisor_prompt = model.history[4][0].content
    assert "- math: 42" in supervisor_prompt and "Answer in a full sentence." in supervisor_prompt
    writer_system = model.history[5][0].content
    assert "The reviewer sent the work back: Answer in a full sentence." in writer_system
    # the supervisor answers in JSON constrained to the worker names
    schema = model.options[0].json_schema
    assert schema is not None and schema["properties"]["role"]["enum"] == [
        "math",
        "writer",
        "finish",
    ]
    assert result.model_calls == 7
    spans = read_spans(settings.traces_dir, trace_id=result.trace_id)
    tree = [(d, s["name"]) for d, s in span_tree(spans)]
    assert tree[0] == (0, "crew.run")
    assert (1, "crew.handoff") in tree and (2, "agent.run") in tree and (1, "crew.review") in tree


def test_rounds_are_bounded(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, cache=False)
    model = ScriptedModel(
        [route("writer", "Write."), answer("draft 1"), verdict(False, "No."),
         route("writer", "Again."), answer("draft 2"), verdict(False, "Still no.")],
        settings=settings,
    )  # fmt: skip
    result = Crew(model, team(settings), max_rounds=2, settings=settings).run("Write a poem.")
    assert (result.stop_reason, result.answer) == ("max_rounds", "draft 2")
    assert result.detail == "2 rounds"


def test_sequential_crew_without_reviewer(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, cache=False)
    roles = [r for r in team(settings) if not r.reviewer]
    model = ScriptedModel(
        [tool_call("calculator", expression="2 ** 10"), answer("1024"), answer("It is 1024.")],
        settings=settings,
    )
    result = Crew(model, roles, routing="sequential", settings=settings).run("2^10?")
    assert (result.answer, result.stop_reason) == ("It is 1024.", "final_answer")
    assert [s.role for s in result.steps if s.kind == "handoff"] == ["math", "writer"]
    assert all(o.json_schema is None for o in model.options)  # no supervisor calls


def test_supervisor_may_finish_and_an_unreadable_choice_falls_back(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, cache=False)
    roles = [r for r in team(settings) if not r.reviewer]
    model = ScriptedModel(
        ["not json", tool_call("calculator", expression="1+1"), answer("2"),
         route("finish", "done")],
        settings=settings,
    )  # fmt: skip
    result = Crew(model, roles, settings=settings).run("1+1?")
    assert (result.answer, result.stop_reason) == ("2", "final_answer")


def test_roles_from_presets_and_custom_specs() -> None:
    context = ToolContext()
    roles = roles_from_spec("researcher,coder,math:calculator+python,reviewer", context)
    assert [r.name for r in roles] == ["researcher", "coder", "math", "reviewer"]
    assert [t.name for t in roles[2].tools] == ["calculator", "python"]
    assert roles[3].reviewer and not roles[0].reviewer
    with pytest.raises(ConfigError, match="Unknown role 'wizard'"):
        roles_from_spec("wizard", context)
    with pytest.raises(ConfigError, match="at least one worker"):
        Crew(ScriptedModel(), roles_from_spec("reviewer", context))
