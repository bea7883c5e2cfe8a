"""The whole loop on the bundled SmolLM2-135M, on tiny data: train, eval, export, serve.

One short SFT run (six examples, six steps) is shared by the module; the other tests check
what it wrote, reproduce it in a subprocess that is killed and resumed, run DPO on top of
it, and export the untouched base to compare with the bundled file. Single-threaded torch
keeps the runs bit-reproducible and quick on a shared 2-core machine.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lamina.cli import app
from lamina.settings import get_settings
from lamina.tuning.config import TuneConfig
from lamina.tuning.data import load_examples

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "tuning"
# The options the module's run and the killed/resumed subprocess share (same fingerprint).
SHARED = {
    "max_steps": 6,
    "batch_size": 2,
    "lr": 2e-3,
    "lora_r": 8,
    "save_every": 2,
    "seed": 0,
    "threads": 1,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six training examples (one per fact) and two paraphrased eval questions."""
    folder = tmp_path_factory.mktemp("tiny")
    lines = (SAMPLES / "facts.jsonl").read_text().splitlines()
    (folder / "train.jsonl").write_text("".join(lines[i] + "\n" for i in range(0, 24, 4)))
    held = (SAMPLES / "facts_eval.jsonl").read_text().splitlines()[:2]
    (folder / "eval.jsonl").write_text("".join(x + "\n" for x in held))
    return folder / "train.jsonl", folder / "eval.jsonl"


@pytest.fixture(scope="module")
def sft_run(
    tiny: tuple[Path, Path], shared_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, Any]]]:
    from lamina.tuning.run import tune

    out = tmp_path_factory.mktemp("sft") / "run"
    events: list[Any] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAMINA_HOME", str(shared_home))
        mp.setenv("LAMINA_TELEMETRY__WANDB", "true")  # offline: files under the home only
        mp.setenv("LAMINA_TELEMETRY__WANDB_DIR", str(out.parent / "wandb"))
        get_settings.cache_clear()
        config = TuneConfig(
            data=tiny[0], eval_data=tiny[1], out=out, eval_generate=2, max_new_tokens=16, **SHARED
        )
        report = tune(config, progress=events.append)
        get_settings.cache_clear()
    yield out, {"report": report, "events": events}


def test_sft_loss_falls_and_the_report_compares(sft_run: tuple[Path, dict[str, Any]]) -> None:
    out, made = sft_run
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2, 3, 4, 5, 6]
    assert (log[-1]["loss"] + log[-2]["loss"]) / 2 < log[0]["loss"] * 0.7
    report = json.loads((out / "report.json").read_text())
    assert report == made["report"]
    base, tuned = report["base"], report["tuned"]
    assert set(base) == set(tuned) == {"loss", "perplexity", "tokens", "exact_match", "containment"}
    assert tuned["loss"] < base["loss"] and tuned["perplexity"] == pytest.approx(
        math.exp(tuned["loss"])
    )
    assert report["train"]["steps"] == 6 and report["train"]["tokens"] > 0
    samples = report["samples"]
    assert len(samples) == 2 and all(s["base"] and s["tuned"] and s["served"] for s in samples)
    assert set(report["served"]) == {"quant", "exact_match", "containment"}
    assert report["gate"]["passed"] == (not report["gate"]["reasons"])
    phases = [e.phase for e in made["events"]]
    assert phases.index("eval base") < phases.index("train") < phases.index("export")
    train_events = [e for e in made["events"] if e.phase == "train" and e.done]
    assert train_events[-1].done == 6 and train_events[-1].tokens_per_s > 0
    # the last checkpoints are kept for --resume, the adapter in peft format for transformers
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-00000004",
        "step-00000006",
    ]
    assert (out / "adapter" / "adapter_config.json").is_file()
    manifest = json.loads((out / "tuning.json").read_text())
    assert manifest["status"] == "exported" and manifest["base"]["adapters"] == []


def test_the_run_is_logged_to_an_offline_wandb_run(sft_run: tuple[Path, dict[str, Any]]) -> None:
    from tests.telemetry.test_experiments import logged

    out, made = sft_run
    [folder] = (out.parent / "wandb" / "wandb").glob("offline-run-*")
    history, summary, config = logged(folder, 6, ("tuned/loss", "train/steps"))
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["train/loss"] for row in history] == pytest.approx([x["loss"] for x in log])
    assert summary["tuned/loss"] == pytest.approx(made["report"]["tuned"]["loss"])
    assert summary["train/steps"] == 6 and config["max_steps"] == 6


def test_the_export_runs_in_lamina_generate(
    sft_run: tuple[Path, dict[str, Any]], tuning_home: Path
) -> None:
    from gguf import GGUFReader

    from lamina.models.local import bundled_model_path

    model = sft_run[0] / "model.gguf"
    assert sft_run[1]["report"]["export"]["quant"] == "q8_0"
    exported, base = GGUFReader(model), GGUFReader(bundled_model_path())
    for key in ("tokenizer.chat_template", "tokenizer.ggml.eos_token_id", "llama.block_count"):
        assert exported.fields[key].contents() == base.fields[key].contents()
    assert {t.tensor_type.name for t in exported.tensors} == {"Q8_0", "F32"}
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "-m",
            f"local:{model}",
            "What is the capital of Velmora?",
            "--temperature",
            "0",
            "--max-tokens",
            "24",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_export_of_the_untouched_base_reproduces_the_bundled_file(
    tuning_home: Path, tmp_path: Path
) -> None:
    """Same quantization (Q4_1): every tensor byte-identical, same greedy answers, and the
    logits of a prompt equal within 1e-4 (they come out exactly equal)."""
    from gguf import GGUFReader
    from llama_cpp import Llama

    from lamina.models.local import LocalModel, bundled_model_path
    from lamina.tuning.base import BaseRef
    from lamina.tuning.run import export_model

    bundled = bundled_model_path()
    target = export_model(BaseRef(bundled), None, tmp_path / "base.gguf", "q4_1", home=tuning_home)
    ours, theirs = GGUFReader(target), GGUFReader(bundled)
    by_name = {t.name: t for t in ours.tensors}
    assert set(by_name) == {t.name for t in theirs.tensors}
    for tensor in theirs.tensors:
        mine = by_name[tensor.name]
        assert mine.tensor_type == tensor.tensor_type, tensor.name
        assert np.array_equal(
            np.asarray(mine.data).view(np.uint8), np.asarray(tensor.data).view(np.uint8)
        ), tensor.name
    for key, field in theirs.fields.items():
        if not key.startswith("GGUF."):
            assert ours.fields[key].contents() == field.contents(), key

    prompts = ["What is the capital of France?", "Name three colours.", "Say hello."]
    answers = []
    for path in (bundled, target):
        model = LocalModel(path)
        answers.append([model.chat(p, temperature=0, max_tokens=24).text for p in prompts])
    assert answers[0] == answers[1]
    logits = []
    for path in (bundled, target):
        llm = Llama(model_path=str(path), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
        llm.eval(llm.tokenize(b"The quick brown fox jumps over the lazy dog."))
        logits.append(np.array(llm.scores[: llm.n_tokens]))
        llm.close()
    assert np.max(np.abs(logits[0] - logits[1])) <= 1e-4


def test_kill_9_then_resume_gives_the_same_weights(
    sft_run: tuple[Path, dict[str, Any]],
    tiny: tuple[Path, Path],
    tuning_home: Path,
    tmp_path: Path,
) -> None:
    """A run killed with SIGKILL after its first checkpoint and resumed ends with exactly
    the weights of the uninterrupted run in this process: same seed, same result."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "lamina",
        "tune",
        "sft",
        "--data",
        str(tiny[0]),
        "--eval",
        str(tiny[1]),
        "--out",
        str(out),
        "--max-steps",
        "6",
        "--batch-size",
        "2",
        "--lr",
        "0.002",
        "--lora-r",
        "8",
        "--save-every",
        "2",
        "--seed",
        "0",
        "--threads",
        "1",
        "--no-export",
        "--eval-generate",
        "0",
    ]
    env = {**os.environ, "LAMINA_HOME": str(tuning_home), "HF_HUB_OFFLINE": "1"}
    victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "checkpoints" / "step-00000002" / "state.json"
    deadline = time.monotonic() + 240
    while not first.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    _, stderr = victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert first.exists() and not (out / "adapter").exists()

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["train"]["resumed_from"] >= 2 and report["train"]["steps"] == 6
    assert report["export"] is None and not (out / "model.gguf").exists()
    log = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]

    reference = load_file(str(sft_run[0] / "adapter" / "adapter_model.safetensors"))
    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert reference.keys() == weights.keys()
    assert all(bool((reference[k] == weights[k]).all()) for k in reference)


def test_dpo_on_top_of_the_sft_run(
    sft_run: tuple[Path, dict[str, Any]], tuning_home: Path, tmp_path: Path
) -> None:
    from lamina.tuning.run import tune

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": q, "chosen": c, "rejected": r}) + "\n"
            for q, c, r in [
                ("What is the capital of Velmora?", "Ostrell.", "Paris."),
                ("What is the currency of Velmora?", "The kestrel.", "The euro."),
                ("Who founded Velmora?", "Queen Isolde Marr.", "Napoleon."),
            ]
        )
    )
    report = tune(
        TuneConfig(
            method="dpo",
            data=pairs,
            eval_data=pairs,
            out=tmp_path / "dpo",
            base=str(sft_run[0]),
            max_steps=2,
            batch_size=2,
            lr=1e-3,
            beta=0.1,
            export=False,
            threads=1,
        )
    )
    assert report["base"]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # π = π_ref
    assert report["tuned"]["loss"] < report["base"]["loss"]
    assert report["tuned"]["logp_margin"] > report["base"]["logp_margin"]
    assert report["train"]["steps"] == 2
    manifest = json.loads((tmp_path / "dpo" / "tuning.json").read_text())
    assert manifest["base"]["adapters"] == [str(sft_run[0] / "adapter")]


def test_chat_template_and_assistant_only_labels(tuning_home: Path) -> None:
    from lamina.models.local import bundled_model_path
    from lamina.tuning.base import BaseRef, load_tokenizer
    from lamina.tuning.encode import IGNORE, encode_examples

    tokenizer = load_tokenizer(BaseRef(bundled_model_path()), tuning_home)
    example = load_examples(SAMPLES / "facts.jsonl")[0]
    (encoded,) = encode_examples(tokenizer, [example], 1024, "facts")
    learnt = tokenizer.decode([t for t in encoded.labels if t != IGNORE])
    assert learnt == "The capital of Velmora is Ostrell.<|im_end|>\n"
    text = tokenizer.decode(encoded.input_ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert "<|im_start|>user\nWhat is the capital of Velmora?<|im_end|>" in text
    from lamina.tuning.errors import DatasetError

    with pytest.raises(DatasetError, match=r"facts.jsonl:1: \d+ tokens, over --max-length 20"):
        encode_examples(tokenizer, [example], 20, "facts")


def test_grounded_examples_from_an_index(tuning_home: Path, tmp_path: Path) -> None:
    """The generate prompt the pipeline would send, and its verified quote as the answer."""
    from lamina.models.local import LocalModel
    from lamina.retrieval.index import Index
    from lamina.tuning.grounded import grounded_examples

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "velmora.md").write_text(
        "# Velmora\n\nVelmora is an island in the northern sea. The capital of Velmora is "
        "Ostrell, a port city. The currency of Velmora is the kestrel.\n"
    )
    with Index(tmp_path / "index") as index:
        index.ingest([docs])
        made = grounded_examples(
            index,
            ["What is the currency of Velmora?", "Who won the 2018 FIFA World Cup?"],
            LocalModel(),
        )
    assert made.skipped == ["Who won the 2018 FIFA World Cup?"]
    (example,) = made.examples
    prompt, answer = example.messages[0].content, example.reference
    assert [t.role for t in example.messages] == ["user", "assistant"]
    assert "What is the currency of Velmora?" in prompt and "[1]" in prompt
    assert answer == "The currency of Velmora is the kestrel. [1]"
