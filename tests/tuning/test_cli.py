"""`lamina tune` and `lamina feedback` at the edge: refusals come before any loading."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lamina.cli import app
from lamina.errors import MissingDependencyError
from lamina.feedback import FeedbackStore
from lamina.tuning.data import load_examples, load_pairs
from lamina.tuning.errors import TuningError

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "tuning"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_bad_data_is_refused_by_line_before_anything_loads(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "Q?", "completion": "A."}\n{"prompt": "Q?"}\n')
    code, output = _invoke("tune", "sft", "--data", str(data), "--out", str(tmp_path / "run"))
    assert code == 1
    assert "bad.jsonl has 1 invalid record" in output and "bad.jsonl:2:" in output
    assert not (tmp_path / "run").exists()


def test_qlora_without_cuda_says_so(tmp_path: Path) -> None:
    code, output = _invoke(
        "tune",
        "sft",
        "--data",
        str(SAMPLES / "facts.jsonl"),
        "--out",
        str(tmp_path / "run"),
        "--qlora",
    )
    assert code == 1
    assert (
        "--qlora loads the base model in 4 bits with bitsandbytes, which needs a CUDA GPU" in output
    )
    assert "Drop --qlora" in output and not (tmp_path / "run").exists()
    code, output = _invoke(
        "tune",
        "dpo",
        "--data",
        str(tmp_path / "x.jsonl"),
        "--out",
        str(tmp_path / "r"),
        "--device",
        "cuda",
    )
    assert code == 1 and "x.jsonl: no such file" in output


def test_a_started_run_is_not_overwritten(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "tuning.json").write_text("{}")
    code, output = _invoke("tune", "sft", "--data", str(SAMPLES / "facts.jsonl"), "--out", str(run))
    assert code == 1 and "already holds a tuning run. Pass --resume" in output
    code, output = _invoke(
        "tune",
        "sft",
        "--data",
        str(SAMPLES / "facts.jsonl"),
        "--out",
        str(tmp_path),
        "--base",
        "openai:gpt-4o",
    )
    assert code == 1 and "needs the weights" in output
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 64)
    code, output = _invoke("tune", "sft", "--data", str(SAMPLES / "facts.jsonl"), "--out",
                           str(tmp_path / "r2"), "--base", str(junk))  # fmt: skip
    assert code == 1 and "is not a readable GGUF model file" in output


def test_resume_refuses_a_checkpoint_of_other_options(tmp_path: Path) -> None:
    from lamina.tuning import train

    checkpoint = tmp_path / "checkpoints" / "step-00000002"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"step": 2, "fingerprint": "aaaa"}))
    assert train.latest_checkpoint(tmp_path) == checkpoint
    (tmp_path / "checkpoints" / ".step-00000004.tmp").mkdir()  # a save killed half-way
    assert train.latest_checkpoint(tmp_path) == checkpoint
    with pytest.raises(TuningError, match="other data or options"):
        train._load(checkpoint, None, None, None, "bbbb")


def test_without_the_tune_extra_the_error_names_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft → ImportError
    for name in ("lamina.tuning.run", "lamina.tuning.train"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(MissingDependencyError, match=r"'peft'.*pip install 'lamina\[tune\]'"):
        importlib.import_module("lamina.tuning.run")


def test_feedback_to_dataset_round_trip(tmp_path: Path) -> None:
    store = FeedbackStore()
    good = store.record("ask", "What is the capital of Velmora?", "Ostrell [1].")
    bad = store.record("ask", "What is the currency of Velmora?", "The euro.")
    silent = store.record("ask", "Who founded Velmora?", "Nobody.")
    assert _invoke("feedback", good, "up") == (0, f"rated {good} up\n")
    code, output = _invoke("feedback", bad, "down", "--fix", "The kestrel.")
    assert code == 0 and "with a fix" in output
    assert _invoke("feedback", silent, "down")[0] == 0
    code, output = _invoke("feedback", "run-nope", "up")
    assert code == 1 and "No run 'run-nope'" in output

    sft, dpo = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"
    code, output = _invoke(
        "tune", "dataset", "--from-feedback", "--out", str(sft), "--pairs", str(dpo)
    )
    assert code == 0, output
    assert "2 SFT examples" in output and "1 DPO pair ->" in output and "1 run rated down" in output
    examples, pairs = load_examples(sft), load_pairs(dpo)  # valid training input as written
    assert [e.reference for e in examples] == ["Ostrell.", "The kestrel."]
    assert (pairs[0].chosen, pairs[0].rejected) == ("The kestrel.", "The euro.")


def test_lamina_ask_records_each_answer_as_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lamina.cli.rag import _record_run
    from lamina.rag.answer import Answer, Citation
    from lamina.settings import get_settings

    answer = Answer(
        question="Which format did GGUF replace?",
        query="Which format did GGUF replace?",
        answer="It replaced GGML. [1]",
        found=True,
        citations=[Citation(n=1, source="q.html", start=3, end=9, quote="GGML", verified=True)],
    )
    run_id = _record_run(answer, "SmolLM2-135M-Instruct", "extract")
    assert run_id is not None and f"run id: {run_id}" in capsys.readouterr().err
    run = FeedbackStore().get(run_id)
    assert (run.kind, run.answer, run.model) == (
        "ask",
        "It replaced GGML. [1]",
        "SmolLM2-135M-Instruct",
    )
    assert run.citations == [
        {"n": 1, "source": "q.html", "page": None, "start": 3, "end": 9, "quote": "GGML"}
    ]
    assert run.meta == {"strategy": "extract", "found": True}

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("LAMINA_HOME", str(blocked))  # the store cannot be created under a file
    get_settings.cache_clear()
    assert _record_run(answer, "m", "extract") is None
    assert "answer not recorded for feedback" in capsys.readouterr().err
