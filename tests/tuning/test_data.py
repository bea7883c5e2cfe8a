"""Training data: every shape read, every fault named by line, splits reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.feedback import Rating, Run
from lamina.tuning.data import (
    from_feedback,
    load_examples,
    load_pairs,
    split_eval,
    write_jsonl,
)
from lamina.tuning.errors import DatasetError
from tests.conftest import require

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "tuning"


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_reads_chat_and_prompt_completion_records(tmp_path: Path) -> None:
    data = _write(
        tmp_path / "d.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Capital of Velmora?"},
                    {"role": "assistant", "content": "Ostrell."},
                ],
                "answers": ["Ostrell"],
            },
            "",
            {"prompt": "Currency?", "completion": "The kestrel.", "system": "Be brief."},
        ],
    )
    first, second = load_examples(data)
    assert [t.role for t in first.messages] == ["system", "user", "assistant"]
    assert first.answers == ("Ostrell",) and first.where.endswith("d.jsonl:1")
    assert [t.as_dict() for t in second.messages] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Currency?"},
        {"role": "assistant", "content": "The kestrel."},
    ]
    assert second.where.endswith("d.jsonl:3")  # blank lines keep the numbering


def test_every_bad_record_is_named_with_its_line(tmp_path: Path) -> None:
    data = _write(
        tmp_path / "bad.jsonl",
        [
            {"prompt": "ok", "completion": "fine"},
            "{not json",
            {"messages": [{"role": "user", "content": "hi"}]},
            {
                "messages": [
                    {"role": "robot", "content": "x"},
                    {"role": "assistant", "content": "y"},
                ]
            },
            {"question": "q", "answer": "a"},
            {"prompt": "p", "completion": ""},
            {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]},
            [1, 2],
        ],
    )
    with pytest.raises(DatasetError) as caught:
        load_examples(data)
    error = caught.value
    assert error.total == 7
    text = str(error)
    assert f"{data}:2: not valid JSON" in text
    assert f"{data}:3: the last turn is 'user'; it must be the assistant reply" in text
    assert f"{data}:4: messages[0] has role 'robot'" in text
    assert f"{data}:5: unknown record shape (keys: answer, question)" in text
    assert f"{data}:6: 'completion' is empty" in text
    assert f"{data}:7: 'messages[0].content' must be a string, not int" in text
    assert f"{data}:8: a record must be a JSON object, not list" in text
    assert ":1:" not in text


def test_long_error_lists_are_cut_with_a_count(tmp_path: Path) -> None:
    data = _write(tmp_path / "bad.jsonl", [{"prompt": ""}] * 25)
    with pytest.raises(DatasetError) as caught:
        load_examples(data)
    assert caught.value.total == 25 and len(caught.value.problems) == 10
    assert "... and 15 more" in str(caught.value)


def test_missing_and_empty_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_examples(tmp_path / "nope.jsonl")
    empty = _write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(DatasetError, match="holds no examples"):
        load_examples(empty)


def test_preference_pairs(tmp_path: Path) -> None:
    data = _write(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "Capital?", "chosen": "Ostrell.", "rejected": "Paris."},
            {
                "messages": [{"role": "user", "content": "Currency?"}],
                "chosen": [{"role": "assistant", "content": "The kestrel."}],
                "rejected": "The euro.",
            },
            {"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes. "},
            {"prompt": "Missing"},
            {
                "prompt": [{"role": "assistant", "content": "no user"}],
                "chosen": "a",
                "rejected": "b",
            },
        ],
    )
    with pytest.raises(DatasetError) as caught:
        load_pairs(data)
    text = str(caught.value)
    assert f"{data}:3: 'chosen' and 'rejected' are the same text" in text
    assert f"{data}:4: a preference pair needs chosen, rejected" in text
    assert f"{data}:5: 'prompt' must end with a user turn, not 'assistant'" in text
    good = _write(tmp_path / "good.jsonl", data.read_text().splitlines()[:2])
    first, second = load_pairs(good)
    assert (first.chosen, first.rejected) == ("Ostrell.", "Paris.")
    assert second.prompt[0].content == "Currency?" and second.chosen == "The kestrel."


def test_datasets_folder(tmp_path: Path) -> None:
    datasets = require("datasets", "the tune extra installs it: pip install 'lamina[tune]'")
    rows = [{"prompt": "Capital?", "completion": "Ostrell."}, {"prompt": "", "completion": "x"}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(tmp_path / "ds")
    with pytest.raises(DatasetError, match=r"ds\[row 1\]: 'prompt' is empty"):
        load_examples(tmp_path / "ds")
    datasets.Dataset.from_list(rows[:1]).save_to_disk(tmp_path / "one")
    (example,) = load_examples(tmp_path / "one")
    assert example.reference == "Ostrell."
    chat = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    mixed = {
        "prompt": ["Capital?", None],
        "completion": ["Ostrell.", None],
        "messages": [None, chat],
    }
    datasets.Dataset.from_dict(mixed).save_to_disk(tmp_path / "mixed")  # None: no value here
    assert [e.reference for e in load_examples(tmp_path / "mixed")] == ["Ostrell.", "A."]
    (tmp_path / "junk").mkdir()
    with pytest.raises(DatasetError, match="not a dataset saved with save_to_disk"):
        load_examples(tmp_path / "junk")


def test_the_eval_split_depends_on_the_seed_only() -> None:
    items = list(range(48))
    train, held = split_eval(items, 0.1, seed=3)
    assert (train, held) == split_eval(items, 0.1, seed=3)
    assert len(held) == 5 and not set(train) & set(held)
    assert split_eval(items, 0.1, seed=4)[1] != held
    with pytest.raises(DatasetError, match="at least 2"):
        split_eval([1], 0.1, seed=0)


def test_the_sample_fact_set_is_valid_and_its_eval_questions_are_new() -> None:
    train = load_examples(SAMPLES / "facts.jsonl")
    held = load_examples(SAMPLES / "facts_eval.jsonl")
    assert len(train) == 48 and len(held) == 12
    asked = {ex.prompt[-1].content for ex in train}
    assert not asked & {ex.prompt[-1].content for ex in held}
    assert all(ex.answers for ex in train + held)


def test_feedback_becomes_examples_and_pairs() -> None:
    def run(i: int, answer: str, messages: list[dict[str, str]] | None = None) -> Run:
        return Run(
            id=f"run-{i}",
            kind="ask",
            created=i,
            question=f"Q{i}?",
            answer=answer,
            messages=messages,
        )

    def rating(i: int, value: str, fix: str | None = None) -> Rating:
        return Rating.model_validate(
            {"run_id": f"run-{i}", "rating": value, "fix": fix, "created": i}
        )

    grounded = [{"role": "system", "content": "Use [1]."}, {"role": "user", "content": "Q3?"}]
    data = from_feedback(
        [
            (run(1, "Right [1]."), rating(1, "up")),
            (run(2, "Wrong."), rating(2, "down", "Fixed.")),
            (run(3, "Cited [1].", grounded), rating(3, "up")),
            (run(4, "Meh."), rating(4, "down")),
        ]
    )
    assert [ex.reference for ex in data.examples] == ["Right.", "Fixed.", "Cited [1]."]
    assert data.examples[2].messages[0].content == "Use [1]."  # the recorded prompt is kept
    (pair,) = data.pairs
    assert (pair.prompt[-1].content, pair.chosen, pair.rejected) == ("Q2?", "Fixed.", "Wrong.")
    assert data.skipped == 1


def test_written_records_read_back(tmp_path: Path) -> None:
    examples = load_examples(SAMPLES / "facts.jsonl")[:3]
    assert write_jsonl(tmp_path / "out" / "x.jsonl", (e.record() for e in examples)) == 3
    assert load_examples(tmp_path / "out" / "x.jsonl") == [
        type(e)(e.messages, e.answers, f"{tmp_path / 'out' / 'x.jsonl'}:{i}")
        for i, e in enumerate(examples, start=1)
    ]


def test_hostile_lines_are_named_not_crashed_on(tmp_path: Path) -> None:
    data = tmp_path / "hostile.jsonl"
    data.write_bytes(
        b'{"prompt": "ok", "completion": "fine"}\n'
        b'{"prompt": "caf\xe9", "completion": "latin-1"}\n' + b"[" * 100_000 + b"\n"
    )
    with pytest.raises(DatasetError) as caught:
        load_examples(data)
    text = str(caught.value)
    assert f"{data}:2: not UTF-8 text (byte 16 of the line)" in text
    assert f"{data}:3: JSON nested too deeply" in text and caught.value.total == 2
