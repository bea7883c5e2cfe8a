from __future__ import annotations

import json
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from lamina.errors import InvalidRequestError
from lamina.evals.gen import evaluate_files, evaluate_texts, load_texts
from tests.evals.conftest import lamina

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "eval"


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _direct(pred: Path, ref: Path) -> dict[str, float]:
    """The corpus numbers computed straight from the libraries, independently of lamina."""
    hyps: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    for line in pred.read_text().splitlines():
        row = json.loads(line)
        hyps[row["id"]] = row["text"]
    for line in ref.read_text().splitlines():
        row = json.loads(line)
        texts = row["text"] if isinstance(row["text"], list) else [row["text"]]
        refs.setdefault(row["id"], []).extend(texts)
    ids = sorted(hyps)
    most = max(len(refs[i]) for i in ids)
    streams = [[refs[i][j] if j < len(refs[i]) else None for i in ids] for j in range(most)]
    hyp_list = [hyps[i] for i in ids]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rouge = [scorer.score_multi(refs[i], hyps[i]) for i in ids]
    return {
        "bleu": sacrebleu.corpus_bleu(hyp_list, streams).score,
        "chrf": sacrebleu.corpus_chrf(hyp_list, streams).score,
        **{t: sum(r[t].fmeasure for r in rouge) / len(ids) for t in ("rouge1", "rouge2", "rougeL")},
    }


def test_corpus_numbers_equal_the_libraries_on_the_samples() -> None:
    pred, ref = SAMPLES / "pred.jsonl", SAMPLES / "ref.jsonl"
    run = evaluate_files(pred, ref)
    direct = _direct(pred, ref)
    for metric, value in direct.items():
        assert run.summary[metric] == value, metric  # identical, not approximately
    assert run.summary["n"] == 8 and run.summary["references"] == 10
    assert "nrefs:var" in run.meta.settings["bleu"]  # q1 and q5 have two references


def test_equal_reference_counts_match_plain_sacrebleu(tmp_path: Path) -> None:
    hyps = {"a": "the cat sat on the mat", "b": "quick brown foxes"}
    refs = {"a": ["the cat sat on a mat", "a cat sat there"], "b": ["the quick brown fox", "fox"]}
    run = evaluate_texts(hyps, refs)
    streams = [[refs["a"][0], refs["b"][0]], [refs["a"][1], refs["b"][1]]]
    assert run.summary["bleu"] == sacrebleu.corpus_bleu(list(hyps.values()), streams).score
    assert run.summary["chrf"] == sacrebleu.corpus_chrf(list(hyps.values()), streams).score
    # SQuAD normalisation drops articles; the best reference counts
    assert run.items[0]["exact_match"] == 1.0  # "the cat sat on a mat"
    assert run.items[1]["exact_match"] == 0.0 and run.items[1]["f1"] == pytest.approx(2 / 3)


def test_ids_in_one_file_only_are_named(tmp_path: Path) -> None:
    pred = _jsonl(tmp_path / "pred.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}])
    ref = _jsonl(tmp_path / "ref.jsonl", [{"id": "a", "text": "x"}, {"id": 7, "text": "z"}])
    with pytest.raises(InvalidRequestError) as caught:
        evaluate_files(pred, ref)
    message = str(caught.value)
    assert "1 id(s) only in" in message and "'b'" in message and "'7'" in message
    assert "pred.jsonl" in message and "ref.jsonl" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("not json", r"pred.jsonl:2 is not valid JSON"),
        ('{"id": "b"}', r"pred.jsonl:2 lacks an 'id' or a 'text'"),
        ('{"id": "b", "text": 3}', r"pred.jsonl:2: 'text' must be a string"),
        ('{"id": true, "text": "t"}', r"pred.jsonl:2: 'id' must be a string or an integer"),
        ('{"id": "a", "text": "again"}', r"pred.jsonl:2 repeats id 'a' \(first on line 1\)"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "pred.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n' + line + "\n")
    with pytest.raises(InvalidRequestError, match=expected):
        load_texts(path, many=False)


def test_references_may_repeat_ids_and_hold_lists(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "ref.jsonl",
        [{"id": 1, "text": "one"}, {"id": 1, "text": ["uno", "eins"]}, {"id": 2, "text": "two"}],
    )
    assert load_texts(path, many=True) == {"1": ["one", "uno", "eins"], "2": ["two"]}


def test_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text("\n\n")
    with pytest.raises(InvalidRequestError, match="holds no records"):
        load_texts(tmp_path / "p.jsonl", many=False)


def test_cli_json_has_the_promised_keys_and_library_values() -> None:
    pred, ref = SAMPLES / "pred.jsonl", SAMPLES / "ref.jsonl"
    run = lamina("eval", "gen", "--pred", str(pred), "--ref", str(ref), "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    for key in ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "f1"):
        assert isinstance(data[key], float), key
    for metric, value in _direct(pred, ref).items():
        assert data[metric] == value
    assert len(data["items"]) == 8 and data["kind"] == "gen"
    assert len(data["meta"]["trace_id"]) == 32  # the command's trace (lamina traces show ID)


def test_cli_names_the_bad_line(tmp_path: Path) -> None:
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": \n')
    run = lamina("eval", "gen", "--pred", str(pred), "--ref", str(SAMPLES / "ref.jsonl"))
    assert run.returncode == 1
    assert f"{pred}:2 is not valid JSON" in run.stderr
