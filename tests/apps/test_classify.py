"""The classifier's logic with the scripted model and the hash embedder."""

from __future__ import annotations

import random

import pytest

from lamina.apps.classify import Classifier, check_labels, classify, label_scores, report
from lamina.errors import InvalidRequestError
from lamina.prompts.fewshot import Example
from lamina.testing import HashEmbedder, ScriptedModel
from lamina.types import Completion, TokenLogprob, Usage
from tests.conftest import require

LABELS = ["positive", "negative"]
EXAMPLES = [
    Example("a wonderful, moving film", "positive"),
    Example("great acting and a great story", "positive"),
    Example("a dull and boring mess", "negative"),
    Example("boring, long and badly acted", "negative"),
]


def test_zero_shot_asks_for_a_label_constrained_to_the_labels() -> None:
    model = ScriptedModel(['{"label": "negative"}'])
    result = classify("It was dull.", LABELS, model=model)
    assert (result.label, result.method) == ("negative", "zero-shot")
    options = model.options[0]
    assert options.json_schema is not None
    assert options.json_schema["properties"]["label"]["enum"] == LABELS
    assert options.temperature == 0
    assert "<text>\nIt was dull.\n</text>" in model.history[0][-1].content


def test_a_reply_that_ignores_the_schema_is_read_as_the_label_it_names() -> None:
    model = ScriptedModel(["I think this is negative."])
    assert classify("meh", LABELS, model=model).label == "negative"


def test_confidence_comes_from_the_label_tokens_renormalised() -> None:
    def lp(token: str, value: float, top: dict[str, float]) -> TokenLogprob:
        return TokenLogprob(token=token, logprob=value, top=top)

    reply = Completion(
        text='{"label": "positive"}',
        finish_reason="stop",
        usage=Usage(),
        model="m",
        logprobs=[
            lp('{"', -0.1, {}),
            lp("label", -0.1, {}),
            lp('":', -0.1, {}),
            lp(' "', -0.1, {}),
            lp("positive", -0.5, {"positive": -0.5, "negative": -1.5, "Positive": -2.0}),
            lp('"}', -0.1, {}),
        ],
    )
    scores = label_scores(reply, "positive", LABELS)
    assert scores["positive"] == pytest.approx(1 / (1 + 2.718281828**-1.0), rel=1e-6)
    assert sum(scores.values()) == pytest.approx(1.0)
    # The label may start inside a token (' "pos' + 'itive'): the prefix is matched.
    split = reply.model_copy(
        update={
            "logprobs": [
                lp('{"label":', -0.1, {}),
                lp(' "pos', -0.2, {' "pos': -0.2, ' "neg': -1.0, ' "': -3.0}),
                lp('itive"}', -0.1, {}),
            ]
        }
    )
    shared = label_scores(split, "positive", LABELS)
    assert shared["positive"] > shared["negative"] > 0
    assert label_scores(reply.model_copy(update={"logprobs": None}), "positive", LABELS) == {}


def test_few_shot_shows_the_most_similar_examples_last_as_chat_turns() -> None:
    model = ScriptedModel(['{"label": "negative"}'])
    classifier = Classifier(LABELS, model=model, examples=EXAMPLES, k=2, embedder=HashEmbedder())
    result = classifier.classify("a boring mess of a film")
    assert result.method == "few-shot"
    messages = model.history[0]
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert "a dull and boring mess" in messages[2].content  # the nearest one, last
    assert messages[3].content == '{"label": "negative"}'
    assert result.examples[-1] == "a dull and boring mess"


def test_balanced_selection_shows_each_label_and_inline_style_uses_delimiters() -> None:
    model = ScriptedModel(['{"label": "positive"}'])
    Classifier(
        LABELS,
        model=model,
        examples=EXAMPLES,
        k=2,
        selection="balanced",
        style="inline",
        embedder=HashEmbedder(),
    ).classify("fine")
    [message] = model.history[0]
    assert message.content.count("<example>") == 2
    assert "<output>positive</output>" in message.content
    assert "<output>negative</output>" in message.content


def test_examples_that_do_not_fit_the_budget_are_dropped() -> None:
    long = [Example("word " * 300, "positive"), *EXAMPLES]
    model = ScriptedModel(['{"label": "positive"}'])
    result = Classifier(
        LABELS, model=model, examples=long, k=5, example_tokens=120, embedder=HashEmbedder()
    ).classify("word word")
    assert "word " * 300 not in result.examples
    assert result.examples


def test_knn_votes_with_the_nearest_examples_and_needs_no_model() -> None:
    result = Classifier(LABELS, examples=EXAMPLES, method="knn", k=3, embedder=HashEmbedder())
    found = result.classify("boring and badly acted")
    assert (found.label, found.method) == ("negative", "knn")
    assert found.confidence is not None and 0.5 < found.confidence <= 1.0
    assert sum(found.scores.values()) == pytest.approx(1.0)


def test_self_consistency_votes_and_reports_the_share() -> None:
    replies = [
        '{"reasoning": "dull", "answer": "negative"}',
        '{"reasoning": "fine", "answer": "positive"}',
        '{"reasoning": "boring", "answer": "negative"}',
    ]
    model = ScriptedModel(replies)
    result = classify("dull", LABELS, model=model, samples=3)
    assert result.label == "negative"
    assert result.confidence == pytest.approx(2 / 3)
    assert [o.seed for o in model.options] == [0, 1, 2]
    assert all(o.temperature > 0 for o in model.options)
    schema = model.options[0].json_schema
    assert schema is not None and list(schema["properties"]) == ["reasoning", "answer"]


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        (["only"], "at least two labels"),
        (["a", "a"], "repeated: a"),
        (["a", ""], "1 to 100 printable"),
        (["a", "b\x00"], "printable"),
        ([str(i) for i in range(60)], "At most 50 labels"),
    ],
)
def test_bad_labels_are_refused_with_the_reason(labels: list[str], problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        check_labels(labels)


def test_examples_must_use_the_labels_and_methods_need_examples() -> None:
    with pytest.raises(InvalidRequestError, match="'neutral' are not among the labels"):
        Classifier(LABELS, model=ScriptedModel(), examples=[Example("x", "neutral")])
    with pytest.raises(InvalidRequestError, match="knn method needs labelled examples"):
        Classifier(LABELS, method="knn")
    with pytest.raises(InvalidRequestError, match="empty"):
        classify("  ", LABELS, model=ScriptedModel())


def test_the_report_matches_scikit_learn() -> None:
    metrics = require("sklearn.metrics", "scikit-learn is the reference: pip install scikit-learn")
    rng = random.Random(7)
    labels = ["a", "b", "c"]
    gold = [rng.choice(labels) for _ in range(200)]
    predicted = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    ours = report(gold, predicted, labels)
    assert ours.accuracy == pytest.approx(metrics.accuracy_score(gold, predicted))
    assert ours.macro_f1 == pytest.approx(
        metrics.f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)
    )
    p, r, f, s = metrics.precision_recall_fscore_support(
        gold, predicted, labels=labels, zero_division=0
    )
    for i, name in enumerate(labels):
        score = ours.per_label[name]
        assert (score.precision, score.recall, score.f1, score.support) == pytest.approx(
            (p[i], r[i], f[i], s[i])
        )


def test_calibration_divides_by_the_prior_for_content_free_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    module = importlib.import_module("lamina.apps.classify")  # the package exports a function

    # The text's scores, then the two content-free inputs' (N/A, [MASK]): a model that says
    # "positive" to anything.
    queue = [
        {"positive": 0.7, "negative": 0.3},
        {"positive": 0.9, "negative": 0.1},
        {"positive": 0.8, "negative": 0.2},
        {"positive": 0.95, "negative": 0.05},
    ]
    monkeypatch.setattr(module, "label_scores", lambda reply, label, labels: queue.pop(0))
    model = ScriptedModel(default='{"label": "positive"}')
    classifier = Classifier(LABELS, model=model)
    result = classifier.classify("The box was damaged.")
    assert result.calibrated and result.label == "negative"
    prior = {"positive": 0.85, "negative": 0.15}
    assert result.prior == pytest.approx(prior)
    expected = 0.3 / prior["negative"] / (0.7 / prior["positive"] + 0.3 / prior["negative"])
    assert result.confidence == pytest.approx(expected)
    assert "<text>\nN/A\n</text>" in model.history[1][-1].content
    assert "<text>\n[MASK]\n</text>" in model.history[2][-1].content
    assert result.usage.prompt_tokens == sum(
        len(m.content.split()) + 1 for call in model.history for m in call
    )
    # The prior is asked once per prompt: the next text costs one call.
    assert classifier.classify("Lovely.").label == "positive"
    assert len(model.history) == 4
    off = Classifier(LABELS, model=ScriptedModel(default='{"label": "positive"}'), calibrate=False)
    queue.append({"positive": 0.7, "negative": 0.3})
    assert not off.classify("The box was damaged.").calibrated
    # Few-shot is not calibrated unless asked: its examples already move the prior.
    shots = Classifier(
        LABELS,
        model=ScriptedModel(default='{"label": "positive"}'),
        examples=EXAMPLES,
        embedder=HashEmbedder(),
    )
    queue.append({"positive": 0.7, "negative": 0.3})
    assert not shots.classify("The box was damaged.").calibrated
