"""The agent loop and every guard, driven by the scripted model (replies picked by turn), with
the real built-in tools, the real trace store and the real session database."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lamina.agents import Agent, AgentConfig, SessionStore, Step
from lamina.agents.memory import MIGRATIONS
from lamina.cli import app
from lamina.errors import ConfigError, IncompleteOutputError
from lamina.models.scripted import ScriptedModel, tool_call
from lamina.settings import Settings
from lamina.telemetry.tracing import read_spans, span_tree
from lamina.tools import FunctionTool, get_tool, tool
from lamina.types import Message

CALCULATOR = get_tool("calculator")


def agent(model: ScriptedModel, tools: list[Any] | None = None, **config: Any) -> Agent:
    settings = model.settings
    return Agent(
        model,
        [CALCULATOR] if tools is None else tools,
        config=AgentConfig(**config),
        settings=settings,
    )


def scripted(*replies: Any, settings: Settings | None = None, **kwargs: Any) -> ScriptedModel:
    return ScriptedModel(list(replies), settings=settings or Settings(cache=False), **kwargs)


def answer(text: str) -> Any:
    return tool_call("final_answer", answer=text)


# -- the happy path -----------------------------------------------------------------------------


def test_reason_act_observe_answer(tmp_path: Path) -> None:
    model = scripted(
        tool_call("calculator", expression="1234 * 5678"), answer("1234 * 5678 = 7006652")
    )
    seen: list[Step] = []
    runner = agent(model)
    runner.on_step = seen.append
    result = runner.run("What is 1234 * 5678? Use the calculator.")
    assert (result.answer, result.stop_reason) == ("1234 * 5678 = 7006652", "final_answer")
    (step,) = result.tool_steps()
    assert (step.tool, step.arguments, step.observation, step.ok) == (
        "calculator",
        {"expression": "1234 * 5678"},
        "7006652",
        True,
    )
    assert [s.kind for s in seen] == ["tool", "answer"]
    # the observation went back as a tool message answering the call
    second = model.history[1]
    assert second[-1] == Message.tool("7006652", "call_1", name="calculator")
    assert [t.name for t in model.options[0].tools] == ["calculator", "final_answer"]
    assert model.options[0].tool_choice == "required"
    assert result.model_calls == 2
    assert result.usage.total_tokens == sum(
        s.prompt_tokens + s.completion_tokens for s in result.steps
    )
    public = result.public()
    assert public["steps"] == [
        {"tool": "calculator", "arguments": {"expression": "1234 * 5678"},
         "observation": "7006652", "ok": True}
    ]  # fmt: skip
    assert set(public) >= {"answer", "stop_reason", "steps", "usage"}


def test_text_answers_when_asked_for(tmp_path: Path) -> None:
    model = scripted(tool_call("calculator", expression="2+2"), "It is 4.")
    result = agent(model, answer="text").run("2+2?")
    assert (result.answer, result.stop_reason) == ("It is 4.", "final_answer")
    assert [t.name for t in model.options[0].tools] == ["calculator"]
    assert model.options[0].tool_choice == "auto"


def test_a_model_without_tools_answers_in_text() -> None:
    result = agent(scripted("Paris."), tools=[]).run("Capital of France?")
    assert (result.answer, result.stop_reason, result.tool_steps()) == (
        "Paris.",
        "final_answer",
        [],
    )


def test_own_tool_names_are_reserved() -> None:
    with pytest.raises(ConfigError, match="final_answer"):
        Agent(
            scripted(), [FunctionTool(lambda answer: answer, name="final_answer", description="x")]
        )


# -- guards -------------------------------------------------------------------------------------


def test_max_steps_then_one_forced_answer() -> None:
    calls = [tool_call("calculator", expression=f"{i} + 1") for i in range(3)]
    model = scripted(*calls, answer("best guess"))
    result = agent(model, max_steps=3).run("count")
    assert (result.stop_reason, result.answer) == ("max_steps", "best guess")
    assert len(result.tool_steps()) == 3
    assert model.options[-1].tool_choice == {"name": "final_answer"}  # the grammar forces it
    assert model.history[-1][-1].content.startswith("Stop calling tools")
    no_last = agent(scripted(*calls), max_steps=3, final_attempt=False).run("count")
    assert (no_last.stop_reason, no_last.answer, no_last.model_calls) == ("max_steps", None, 3)


def test_repeated_call_warns_then_stops() -> None:
    counted: list[str] = []

    @tool
    def lookup(term: str) -> str:
        """Look a term up."""
        counted.append(term)
        return f"{term}: a fruit"

    same = tool_call("lookup", term="apple")
    spaced = tool_call("lookup", id="", term="apple")
    model = scripted(same, spaced, same, answer("An apple is a fruit."))
    result = agent(model, [lookup]).run("What is an apple?")
    assert counted == ["apple"]  # the tool ran once
    assert [s.kind for s in result.steps] == ["tool", "warning", "warning", "answer"]
    warning = result.steps[1].observation
    assert warning.startswith(
        "You already called lookup with these arguments and got: apple: a fruit"
    )
    assert (result.stop_reason, result.answer) == ("repeated_call", "An apple is a fruit.")
    assert "3 times" in result.detail


def test_tool_error_budget() -> None:
    @tool
    def flaky(x: int) -> str:
        """Fails."""
        raise ValueError("no luck")

    model = scripted(
        tool_call("nonexistent", q=1),
        tool_call("flaky", x="not a number"),
        tool_call("flaky", x=2),
        answer("unreachable"),
    )
    result = agent(model, [flaky], max_tool_errors=3, final_attempt=False).run("try")
    observations = [s.observation for s in result.tool_steps()]
    assert observations[0].startswith("Error: there is no tool named 'nonexistent'. Tools: flaky")
    assert "invalid arguments for flaky" in observations[1]
    assert observations[2] == "Error: flaky raised ValueError: no luck"
    assert (result.stop_reason, result.answer) == ("tool_errors", None)
    assert not any(s.ok for s in result.tool_steps())


def test_token_and_cost_budgets() -> None:
    model = scripted(*[tool_call("calculator", expression=f"{i}*2") for i in range(10)])
    result = agent(model, max_tokens=150).run("spend")
    assert result.stop_reason == "budget" and "tokens used of 150" in result.detail
    assert result.usage.total_tokens >= 150
    assert result.model_calls < 10 and result.answer is None  # no call past the budget

    class Priced(ScriptedModel):
        backend = "priced"

    settings = Settings(cache=False, pricing={"echo": (10_000.0, 0.0)})  # $0.01 a prompt token
    costly = Priced([tool_call("calculator", expression="1+1")] * 5, settings=settings)
    spent = Agent(costly, [CALCULATOR], config=AgentConfig(max_cost_usd=0.5), settings=settings)
    result = spent.run("spend money")
    assert result.stop_reason == "budget" and result.usage.cost_usd is not None
    assert result.usage.cost_usd >= 0.5 and "spent of $0.500000" in result.detail


def test_wall_clock_timeout() -> None:
    def slow(messages: list[Message]) -> Any:
        time.sleep(0.3)
        return tool_call("calculator", expression=f"{len(messages)} + 1")

    model = scripted(*[slow] * 10)
    result = agent(model, timeout_s=0.5).run("slowly")
    assert result.stop_reason == "timeout" and result.answer is None
    assert result.model_calls == 2 and result.seconds < 2


def test_a_call_cut_off_by_the_token_limit_is_the_models_mistake() -> None:
    model = scripted(IncompleteOutputError('<tool_call>{"name": "calc', 300), answer("ok"))
    result = agent(model).run("x")
    assert result.answer == "ok"
    assert (
        result.steps[0].kind == "warning"
        and "cut off after 300 tokens" in result.steps[0].observation
    )
    assert model.history[1][-1].content.startswith("Your tool call was cut off")


def test_oldest_observations_are_elided_to_fit_the_window() -> None:
    @tool
    def dump(part: int) -> str:
        """Return a long text."""
        return " ".join(["word"] * 550)

    model = scripted(
        tool_call("dump", part=1), tool_call("dump", part=2), answer("done"), context_window=1200
    )
    result = agent(model, [dump], reply_tokens=200).run("read everything")
    assert result.answer == "done"
    last = model.history[-1]
    tool_turns = [m.content for m in last if m.role == "tool"]
    assert tool_turns[0] == "[observation elided to fit the context window]"
    assert tool_turns[1].startswith("word word")
    assert model.count_tokens(last) + 200 <= 1200


# -- self-reflection ----------------------------------------------------------------------------


def test_critic_sends_an_unsupported_answer_back_once() -> None:
    model = scripted(
        tool_call("calculator", expression="6 * 7"),
        answer("It is 48."),
        json.dumps({"supported": False, "problem": "The observation says 42, not 48."}),
        answer("It is 42."),
    )
    result = agent(model, critic=True).run("6 * 7?")
    assert (result.answer, result.revised) == ("It is 42.", True)
    critic = next(s for s in result.steps if s.kind == "critic")
    assert critic.observation == "unsupported: The observation says 42, not 48."
    assert model.options[2].json_schema is not None  # the verdict is structured output
    assert "A reviewer checked your answer 'It is 48.'" in model.history[3][-1].content
    approving = scripted(
        tool_call("calculator", expression="6 * 7"),
        answer("It is 42."),
        json.dumps({"supported": True, "problem": ""}),
    )
    kept = agent(approving, critic=True).run("6 * 7?")
    assert (kept.answer, kept.revised) == ("It is 42.", False)


# -- traces -------------------------------------------------------------------------------------


def test_every_step_is_a_span_and_traces_show_prints_the_tree(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", cache=False)
    model = scripted(tool_call("calculator", expression="2 + 2"), answer("4"), settings=settings)
    result = Agent(model, [CALCULATOR], settings=settings).run("2 + 2?")
    assert result.trace_id
    spans = read_spans(settings.traces_dir, trace_id=result.trace_id)
    tree = [(depth, s["name"]) for depth, s in span_tree(spans)]
    assert tree == [
        (0, "agent.run"),
        (1, "agent.model"),
        (2, "llm.chat"),  # the model layer's own span
        (1, "agent.tool"),
        (1, "agent.model"),
        (2, "llm.chat"),
    ]
    tool_span = next(s for s in spans if s["name"] == "agent.tool")
    assert tool_span["attributes"]["lamina.arguments"] == '{"expression": "2 + 2"}'
    assert tool_span["attributes"]["lamina.observation"] == "4"
    model_span = next(s for s in spans if s["name"] == "agent.model")
    assert model_span["attributes"]["lamina.prompt_tokens"] > 0
    shown = CliRunner().invoke(
        app, ["traces", "show", result.trace_id], env={"LAMINA_HOME": str(settings.home)}
    )
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("agent.run ") and "stop_reason=final_answer" in lines[0]
    assert lines[3].startswith("  agent.tool ") and "observation=4" in lines[3]
    missing = CliRunner().invoke(
        app, ["traces", "show", "0" * 32], env={"LAMINA_HOME": str(settings.home)}
    )
    assert missing.exit_code == 1 and "No spans" in missing.output


# -- memory -------------------------------------------------------------------------------------


def test_sessions_resume_and_summarise_older_turns(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "agents.sqlite")
    model = scripted(
        answer("Hi Ada."),
        answer("You are Ada."),
        "Ada introduced herself; the assistant greeted her and recalled her name.",  # summary
        answer("Still Ada."),
    )
    runner = Agent(
        model, [], config=AgentConfig(memory_tokens=12), sessions=store, settings=model.settings
    )
    runner.run("My name is Ada.", session="s1")
    second = runner.run("What is my name?", session="s1")
    assert second.answer == "You are Ada."
    assert [m.content for m in model.history[1][1:3]] == ["My name is Ada.", "Hi Ada."]
    runner.run("And now?", session="s1")  # over 12 tokens: the older turns are summarised
    system = model.history[-1][0].content
    assert "Summary of the earlier conversation: Ada introduced herself" in system
    assert [m.content for m in model.history[-1][1:3]] == ["What is my name?", "You are Ada."]
    summary, turns = SessionStore(tmp_path / "agents.sqlite").history("s1")  # persisted
    assert summary.startswith("Ada introduced") and [t for t, _ in turns] == [
        "What is my name?",
        "And now?",
    ]
    assert store.sessions()[0][:2] == ("s1", 3)
    other = runner.run("Who am I?", session="s2")  # another session knows nothing of s1
    assert all("Ada" not in m.content for m in model.history[-1]) and other.session == "s2"


def test_a_session_database_from_a_newer_lamina_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agents.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(ConfigError, match="newer Lamina"):
        SessionStore(path)


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_agent_json_with_a_fixed_model() -> None:
    result = CliRunner().invoke(app, ["agent", "Say hi.", "--model", "scripted:Hello!", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["answer"] == "Hello!" and payload["stop_reason"] == "final_answer"
    assert payload["steps"] == [] and payload["usage"]["model_calls"] == 1
    bad = CliRunner().invoke(app, ["agent", "x", "--model", "scripted", "--tools", "nope"])
    assert bad.exit_code == 1 and "Unknown tool 'nope'" in bad.output
