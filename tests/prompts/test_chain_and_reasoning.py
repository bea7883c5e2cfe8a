"""Chains (typed steps, records, spans) and chain-of-thought with self-consistency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.prompts import OutputParseError, Step, generate, think
from lamina.prompts.chain import StepRecord
from lamina.prompts.tracing import Tracer
from lamina.settings import Settings
from lamina.telemetry.tracing import read_spans
from lamina.testing import ScriptedModel


def test_steps_run_in_order_and_each_is_recorded() -> None:
    model = ScriptedModel(["Paris"])
    chain = (
        Step("clean", lambda text: text.strip())
        .then(Step("ask", lambda q: {"question": q}))
        .then(generate("answer", model, "Q: {{ question }}", variables=["question"]))
    )
    result = chain.run("  Capital of France?  ", trace=False)
    assert result.output == "Paris"
    records: list[StepRecord] = result.steps
    assert [(r.name, r.input) for r in records][:2] == [
        ("clean", "  Capital of France?  "),
        ("ask", "Capital of France?"),
    ]
    assert records[2].usage.prompt_tokens == result.usage.prompt_tokens > 0
    assert model.history[0][0].content == "Q: Capital of France?"


def test_a_failing_step_is_recorded_and_raised() -> None:
    def boom(value: int) -> int:
        raise ValueError("no")

    chain = Step("one", lambda x: x + 1).then(Step("two", boom))
    with pytest.raises(ValueError, match="no"):
        chain.run(1, trace=False)


def test_each_step_is_a_span_in_the_trace_store(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    tracer = Tracer(settings)
    result = Step("double", lambda x: x * 2).then(Step("show", str)).run(21, tracer=tracer)
    tracer.flush()
    spans = read_spans(settings.traces_dir, trace_id=result.trace_id)
    names = sorted(s["name"] for s in spans)
    assert names == ["chain.run", "chain.step", "chain.step"]
    outputs = {
        s["attributes"]["lamina.step"]: s["attributes"].get("lamina.output")
        for s in spans
        if s["name"] == "chain.step"
    }
    assert outputs == {"double": "42", "show": "42"}


def test_reasoning_is_kept_apart_and_only_the_answer_returned(tmp_path: Path) -> None:
    model = ScriptedModel(['{"reasoning": "Two and two make four.", "answer": 4}'])
    tracer = Tracer(Settings(home=tmp_path))
    result = think(model, "What is 2+2?", {"type": "integer"}, tracer=tracer)
    assert result.answer == 4 and result.agreement == 1.0
    assert result.samples[0].reasoning == "Two and two make four."
    sent = model.history[0][-1].content
    assert sent.startswith("What is 2+2?") and '"reasoning" holds your steps' in sent
    assert model.options[0].temperature == 0.0
    tracer.flush()
    [sample] = [s for s in read_spans(tmp_path / "traces") if s["name"] == "reasoning.sample"]
    assert sample["attributes"]["lamina.reasoning"] == "Two and two make four."


def test_unreadable_samples_are_skipped_and_all_unreadable_raises() -> None:
    model = ScriptedModel(["oops", json.dumps({"reasoning": "r", "answer": "b"})])
    result = think(model, "x", {"type": "string"}, samples=2, trace=False)
    assert result.answer == "b" and result.samples[0].error is not None
    with pytest.raises(OutputParseError, match="no sample gave the JSON"):
        think(ScriptedModel(["nope"]), "x", {"type": "string"}, trace=False)
