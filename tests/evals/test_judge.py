from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.errors import AuthenticationError, IncompleteOutputError
from lamina.evals.judge import Judge, JudgeSample, average_precision
from lamina.evals.rag import evaluate, load_dataset
from lamina.models.scripted import Reply, ScriptedModel
from lamina.prompts import PromptError, render
from lamina.retrieval.index import Index
from lamina.settings import Settings
from lamina.testing import HashEmbedder
from tests.evals.conftest import make_pipeline

SAMPLE = JudgeSample(
    question="Which format did GGUF replace?",
    answer="GGUF replaced GGML in 2023. It is used by llama.cpp.",
    contexts=["GGUF replaced the older GGML format in August 2023.", "LoRA freezes weights."],
    reference="GGML. It was replaced in August 2023.",
)


def scripted(replies: list[Reply]) -> ScriptedModel:
    """A scripted judge without the response cache (equal prompts would replay a reply)."""
    return ScriptedModel(replies, settings=Settings(cache=False))


def verdicts(*bits: int, key: str = "verdicts", name: str = "verdict") -> str:
    return json.dumps({key: [{"reason": "because", name: b} for b in bits]})


def test_faithfulness_is_supported_statements_over_statements() -> None:
    model = scripted(
        [json.dumps({"statements": ["GGUF replaced GGML in 2023.", "GGUF is for llama.cpp."]}),
         verdicts(1, 0)]
    )  # fmt: skip
    judged = Judge(model, HashEmbedder()).score(SAMPLE, ["faithfulness"])
    assert judged.values == {"faithfulness": 0.5} and not judged.errors
    nli_prompt = model.history[1][-1].content
    assert "GGUF replaced the older GGML format" in nli_prompt
    assert "2. GGUF is for llama.cpp." in nli_prompt
    schema = model.options[1].json_schema
    assert schema is not None
    array = schema["properties"]["verdicts"]
    assert array["minItems"] == array["maxItems"] == 2  # one verdict per statement, enforced
    assert all(o.temperature == 0.0 for o in model.options)


def test_answer_relevancy_is_the_cosine_zeroed_when_noncommittal() -> None:
    committal = scripted([json.dumps({"question": SAMPLE.question, "noncommittal": 0})])
    judged = Judge(committal, HashEmbedder()).score(SAMPLE, ["answer_relevancy"])
    assert judged.values["answer_relevancy"] == pytest.approx(1.0)
    evasive = scripted([json.dumps({"question": SAMPLE.question, "noncommittal": 1})])
    judged = Judge(evasive, HashEmbedder()).score(SAMPLE, ["answer_relevancy"])
    assert judged.values["answer_relevancy"] == 0.0
    assert judged.details["noncommittal"] == 1


def test_context_precision_is_average_precision_of_per_context_verdicts() -> None:
    model = scripted([verdicts(0, 1)])
    judged = Judge(model, HashEmbedder()).score(SAMPLE, ["context_precision"])
    assert judged.values["context_precision"] == pytest.approx(0.5)
    assert judged.details["context_verdicts"] == [0, 1]
    prompt = model.history[0][-1].content
    assert "Answer: GGML. It was replaced" in prompt  # the reference
    assert "Context 2: LoRA freezes weights." in prompt  # every context, in rank order
    assert average_precision([1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)


def test_context_recall_classifies_each_reference_sentence() -> None:
    model = scripted([verdicts(1, 0, key="classifications", name="attributed")])
    judged = Judge(model, HashEmbedder()).score(SAMPLE, ["context_recall"])
    assert judged.values["context_recall"] == 0.5
    prompt = model.history[0][-1].content
    assert "1. GGML." in prompt and "2. It was replaced in August 2023." in prompt


def test_a_bad_reply_is_recorded_per_metric_and_the_rest_goes_on() -> None:
    model = scripted(
        [
            json.dumps({"statements": ["One.", "Two."]}),
            verdicts(1),  # one verdict for two statements
            "not json at all",  # answer relevancy
            IncompleteOutputError('{"verdicts": [{"reason": "cut', 160),  # context precision
            verdicts(1, 1, key="classifications", name="attributed"),
        ]
    )
    judged = Judge(model, HashEmbedder()).score(SAMPLE)
    assert judged.values["faithfulness"] is None
    assert "expected 2 verdicts" in judged.errors["faithfulness"]
    assert judged.values["answer_relevancy"] is None
    assert "not JSON" in judged.errors["answer_relevancy"]
    assert "cut off at max_tokens=160" in judged.errors["context_precision"]
    assert judged.values["context_recall"] == 1.0 and "context_recall" not in judged.errors


def test_errors_that_are_not_the_judges_fault_raise() -> None:
    model = scripted([AuthenticationError("bad key", status=401)])
    with pytest.raises(AuthenticationError):
        Judge(model, HashEmbedder()).score(SAMPLE, ["answer_relevancy"])


def test_templates_are_strict() -> None:
    with pytest.raises(PromptError, match="missing variable 'context'"):
        render("evals/nli", statements=["x"])  # no context


def test_evaluate_adds_judged_metrics_where_they_apply(index: Index, tmp_path: Path) -> None:
    rows = [
        {"question": "Which older format did GGUF replace?", "answers": ["GGML"],
         "source": "gguf.md"},
        {"question": "Who won the football world cup in 1998?", "answers": [], "source": None},
    ]  # fmt: skip
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    def reply(messages: list[object]) -> str:
        prompt = str(getattr(messages[-1], "content", ""))
        if "Break down each sentence" in prompt:
            return json.dumps({"statements": ["GGUF replaced GGML."]})
        if "judge the faithfulness" in prompt:
            return verdicts(1)
        if "Generate a question" in prompt:
            return json.dumps({"question": "Which older format did GGUF replace?",
                               "noncommittal": 0})  # fmt: skip
        if "classify if the sentence" in prompt:
            return verdicts(1, key="classifications", name="attributed")
        return verdicts(*[1] * prompt.count("\nContext "))

    judge_model = scripted([reply] * 20)
    result = evaluate(
        make_pipeline(index), load_dataset(path), judge=Judge(judge_model, HashEmbedder())
    )
    answered, unanswerable = result.items
    assert answered.found and answered.reference == "GGML" and answered.contexts
    assert answered.contexts[0].startswith("GGUF is the file format")  # read back from the index
    assert answered.judged == {
        "faithfulness": 1.0,
        "answer_relevancy": pytest.approx(1.0),
        "context_precision": 1.0,
        "context_recall": 1.0,
    }
    assert not unanswerable.found and all(v is None for v in unanswerable.judged.values())
    assert result.judged["faithfulness"] == 1.0 and result.judged["faithfulness_n"] == 1
    assert result.judged["errors"] == 0 and result.judged["judge"] == "scripted:echo"


@pytest.mark.integration
def test_the_bundled_model_judges_without_crashing() -> None:
    from lamina.models import get_model

    sample = JudgeSample(
        question="Which format did GGUF replace?",
        answer="GGUF replaced GGML.",
        contexts=["GGUF replaced the older GGML format in August 2023."],
        reference="GGML.",
    )
    judge = Judge(get_model("local"), HashEmbedder(), max_statements=2)
    judged = judge.score(sample)
    for metric, value in judged.values.items():
        assert (value is None and metric in judged.errors) or 0.0 <= value <= 1.0, metric
    # Grammar-constrained replies always parse: whatever failed, it is not the JSON.
    assert not any("not JSON" in e for e in judged.errors.values())
