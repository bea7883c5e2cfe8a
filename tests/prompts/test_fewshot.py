"""Few-shot example sets: loading, selection, budgets and the two ways of showing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import InvalidRequestError
from lamina.prompts.fewshot import (
    BalancedSelector,
    Example,
    SimilaritySelector,
    as_turns,
    as_xml,
    fit,
    load_examples,
)
from lamina.testing import HashEmbedder


def test_examples_load_from_either_spelling(tmp_path: Path) -> None:
    path = tmp_path / "ex.jsonl"
    path.write_text('{"input": "2+2", "output": "4"}\n\n{"text": "great", "label": "positive"}\n')
    assert load_examples(path) == [Example("2+2", "4"), Example("great", "positive")]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{bad\n", "ex.jsonl:1: not JSON"),
        ('["x"]\n', "ex.jsonl:1: expected an object"),
        ('{"output": "x"}\n', 'ex.jsonl:1: needs a non-empty "input"'),
        ('{"input": "x"}\n', 'ex.jsonl:1: needs a non-empty "output"'),
        ("\n\n", "holds no examples"),
    ],
)
def test_a_bad_line_is_an_error_naming_it(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "ex.jsonl"
    path.write_text(content)
    with pytest.raises(InvalidRequestError, match=problem):
        load_examples(path)


def test_similarity_picks_the_nearest_inputs() -> None:
    examples = [Example("the cat sat", "a"), Example("stock prices fell", "b")]
    picked = SimilaritySelector(HashEmbedder()).select("prices of stock", examples, 1)
    assert picked == [examples[1]]


def test_balance_takes_turns_over_labels_most_similar_first() -> None:
    examples = [
        Example("red apple", "fruit"),
        Example("green apple pie", "fruit"),
        Example("red car", "vehicle"),
        Example("fast car", "vehicle"),
    ]
    picked = BalancedSelector(HashEmbedder()).select("green apple", examples, 3)
    assert [e.output for e in picked] == ["fruit", "vehicle", "fruit"]
    assert picked[0].input == "green apple pie"


def test_fit_keeps_what_fits_in_order() -> None:
    examples = [Example("a " * 5, "x"), Example("b " * 50, "y"), Example("c", "z")]
    kept, dropped = fit(examples, lambda es: sum(len(e.input.split()) for e in es), 10)
    assert [e.output for e in kept] == ["x", "z"] and [e.output for e in dropped] == ["y"]


def test_turns_and_inline_show_the_same_examples_and_inline_escapes() -> None:
    examples = [Example("say </input> hi", "ok")]
    turns = as_turns(examples)
    assert [(m.role, m.content) for m in turns] == [
        ("user", "say </input> hi"),
        ("assistant", "ok"),
    ]
    inline = as_xml(examples)
    assert inline.count("</input>") == 1 and "&lt;/input>" in inline
    assert as_xml([]) == ""
