"""A whole run: data → base → LoRA training → before/after eval → gate → merged GGUF.

    >>> from lamina.tuning.run import tune                                   # doctest: +SKIP
    >>> report = tune(TuneConfig(data=Path("facts.jsonl"), out=Path("out")))  # doctest: +SKIP
    >>> report["base"]["loss"], report["tuned"]["loss"]                      # doctest: +SKIP
    (3.91, 0.42)

The output folder holds everything the run made:

    tuning.json        what was asked (options), the base it started from, where it stands
    train_log.jsonl    one line per step: loss, learning rate, tokens, seconds
    checkpoints/       the last few checkpoints, for --resume
    adapter/           the LoRA adapter in peft format (transformers, vLLM)
    base_eval.json     the base model's eval metrics (kept for a resumed run)
    report.json        base vs tuned metrics, sample answers, the gate, the training numbers
    model.gguf         the merged, quantized model: lamina generate -m local:DIR/model.gguf
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from lamina.models.quantize import requantize
from lamina.settings import get_settings
from lamina.telemetry import spans
from lamina.telemetry.experiments import experiment
from lamina.tuning.base import (
    ADAPTER,
    MANIFEST,
    BaseRef,
    load_base,
    load_tokenizer,
    require,
    resolve_base,
    resolve_device,
)
from lamina.tuning.config import Quant, TuneConfig
from lamina.tuning.data import ChatExample, load_examples, load_pairs, split_eval
from lamina.tuning.encode import encode_examples, encode_pairs
from lamina.tuning.errors import TuningError
from lamina.tuning.evaluate import gate, generate, task_metrics
from lamina.tuning.export import check_exportable, write_gguf
from lamina.tuning.train import (
    CHECKPOINTS,
    DpoObjective,
    Objective,
    Progress,
    ProgressFn,
    SftObjective,
    train,
)

torch = require("torch")
peft = require("peft")

__all__ = ["MODEL_FILE", "REPORT", "export_model", "tune"]

MODEL_FILE = "model.gguf"
REPORT = "report.json"
BASE_EVAL = "base_eval.json"


def _digest(*paths: Path | None) -> str:
    h = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _prepare_out(config: TuneConfig, resume: bool) -> None:
    out = config.out
    started = (out / MANIFEST).is_file() or (out / CHECKPOINTS).is_dir()
    if started and not resume:
        raise TuningError(
            f"{out} already holds a tuning run. Pass --resume to continue it from its last "
            "checkpoint, or choose another --out (or delete that folder to start over)."
        )
    if out.exists() and not out.is_dir():
        raise TuningError(f"--out {out} is a file; it must be a folder (new or a run's).")
    out.mkdir(parents=True, exist_ok=True)


def export_model(
    ref: BaseRef, adapter: Path | None, target: Path, quant: Quant, *, home: Path
) -> Path:
    """Merge ``adapter`` (if any) into the base in float32 on the CPU and write ``target``.

    With no adapter this exports the base itself (the round-trip check).
    """
    from lamina.models.native import ensure_runtime

    model = load_base(ref, home, device="cpu")
    if adapter is not None:
        model = peft.PeftModel.from_pretrained(model, adapter).merge_and_unload()
    scratch = target.with_name(f".{target.stem}.f32.gguf")
    try:
        write_gguf(model, ref.gguf, scratch)
        del model
        gc.collect()
        ensure_runtime(ref.gguf)
        requantize(scratch, target, quant)
    finally:
        scratch.unlink(missing_ok=True)
    return target


def _idle_cores() -> int:
    """torch's threads minus the machine's load (at least one).

    torch's CPU threads spin while they wait for each other at every operation, so a thread
    without a core of its own stalls them all: on 2 cores under load 10, a training step took
    6-50 s with two threads and 1.3-1.7 s with one. On an idle machine this is every core.
    """
    cores = int(torch.get_num_threads())
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def _with_lora(model: Any, config: TuneConfig) -> Any:
    return peft.get_peft_model(
        model,
        peft.LoraConfig(
            r=config.lora_r,
            lora_alpha=config.alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            task_type="CAUSAL_LM",
        ),
    )


def _peak_memory_mb(device: str) -> float:
    """GPU memory torch allocated at most, or this process's resident-memory high-water mark."""
    if device == "cuda":
        return float(torch.cuda.max_memory_allocated()) / 2**20
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _served(target: Path, generated: list[ChatExample], max_tokens: int, threads: int) -> list[str]:
    """Replies of the exported GGUF run by llama.cpp, as ``lamina generate`` would give them.

    The response cache stays off: it keys local models by file name, and every run's file
    is called model.gguf.
    """
    from lamina.models.local import LocalModel
    from lamina.types import Message

    settings = get_settings().model_copy(update={"cache": False}, deep=True)
    settings.local.n_threads = settings.local.n_threads or threads
    model = LocalModel(target, settings=settings)
    return [
        model.chat(
            [Message.model_validate(t.as_dict()) for t in ex.prompt],
            temperature=0,
            max_tokens=max_tokens,
        ).text.strip()
        for ex in generated
    ]


def _eval_side(
    model: Any,
    objective: Objective,
    config: TuneConfig,
    tokenizer: Any,
    generated: list[ChatExample],
) -> tuple[dict[str, float], list[str]]:
    metrics = objective.evaluate(model, config.batch_size)
    replies: list[str] = []
    if generated:
        replies = generate(
            model,
            tokenizer,
            [ex.prompt for ex in generated],
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
        )
        metrics.update(task_metrics(generated, replies))
    return metrics, replies


def tune(
    config: TuneConfig, *, resume: bool = False, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Run ``config`` end to end; returns the report (also in ``out/report.json``).

    The run is a ``tune.run`` span, and a Weights & Biases run (loss per step, the report's
    numbers as its summary) when ``telemetry.wandb`` is on."""
    threads = torch.get_num_threads()
    options = config.model_dump(mode="json")
    with (
        spans.span("tune.run", "CHAIN", method=config.method, out=str(config.out)) as span,
        experiment("tune", config=options, name=config.out.name) as logged,
    ):
        try:
            report = _tune(config, resume, logged.watch(progress))
        finally:
            torch.set_num_threads(threads)  # --threads is this run's, not the process's
        span.set(passed=report["gate"]["passed"], steps=report["train"]["steps"])
        logged.summarize({k: report[k] for k in ("base", "tuned", "train") if k in report})
        return report


def _tune(config: TuneConfig, resume: bool, progress: ProgressFn | None) -> dict[str, Any]:
    notify = progress or (lambda _: None)
    home = get_settings().home
    started = time.perf_counter()

    # Everything that can be refused is refused before the minutes of loading and training.
    if config.method == "sft":
        examples: list[Any] = load_examples(config.data)
        held: list[Any] = load_examples(config.eval_data) if config.eval_data else []
    else:
        examples, held = (
            load_pairs(config.data),
            (load_pairs(config.eval_data) if config.eval_data else []),
        )
    if not held:
        examples, held = split_eval(examples, config.eval_fraction, config.seed)
    device = resolve_device(config.device, config.qlora)
    threads = config.threads or _idle_cores()
    torch.set_num_threads(threads)
    ref = resolve_base(config.base)
    if config.export:
        check_exportable(ref.gguf)
    _prepare_out(config, resume)
    fingerprint = config.fingerprint(_digest(config.data, config.eval_data))
    out = config.out
    manifest = {
        "version": 1,
        "method": config.method,
        "base": ref.as_json(),
        "config": config.model_dump(mode="json"),
        "fingerprint": fingerprint,
        "status": "training",
    }
    _write_json(out / MANIFEST, manifest)

    notify(Progress("load", 0, 1))
    tokenizer = load_tokenizer(ref, home)
    source = str(config.data)
    if config.method == "sft":
        objective: Objective = SftObjective(
            encode_examples(tokenizer, examples, config.max_length, source), tokenizer.pad_token_id
        )
        held_out: Objective = SftObjective(
            encode_examples(tokenizer, held, config.max_length, str(config.eval_data or source)),
            tokenizer.pad_token_id,
        )
        generated = held[: config.eval_generate]
    else:
        objective = DpoObjective(
            encode_pairs(tokenizer, examples, config.max_length, source),
            tokenizer.pad_token_id,
            config.beta,
        )
        held_out = DpoObjective(
            encode_pairs(tokenizer, held, config.max_length, str(config.eval_data or source)),
            tokenizer.pad_token_id,
            config.beta,
        )
        generated = []
    torch.manual_seed(config.seed)
    model = load_base(ref, home, device=device, qlora=config.qlora)
    if config.qlora:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    with warnings.catch_warnings():  # transformers' deprecation notes, raised inside peft
        warnings.simplefilter("ignore", FutureWarning)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        model = _with_lora(model, config)
    model.eval()
    # DPO's reference log-probabilities come from the adapter switched off; take them now,
    # not inside the base eval's own switched-off block (peft's switch does not nest).
    objective.prepare(model, config.batch_size)
    held_out.prepare(model, config.batch_size)
    notify(Progress("load", 1, 1))

    base_file = out / BASE_EVAL
    cached = json.loads(base_file.read_text()) if base_file.is_file() else None
    eval_key = f"{fingerprint}:{config.eval_generate}:{config.max_new_tokens}"
    if cached and cached.get("key") == eval_key:
        base_metrics, base_replies = cached["metrics"], cached["replies"]
    else:
        notify(Progress("eval base", 0, 1))
        with model.disable_adapter():
            base_metrics, base_replies = _eval_side(model, held_out, config, tokenizer, generated)
        _write_json(
            base_file,
            {"key": eval_key, "metrics": base_metrics, "replies": base_replies},
        )
        notify(Progress("eval base", 1, 1))

    result = train(model, objective, config, fingerprint, resume=resume, progress=progress)
    adapter = out / ADAPTER
    shutil.rmtree(adapter, ignore_errors=True)
    model.save_pretrained(adapter)

    notify(Progress("eval tuned", 0, 1))
    tuned_metrics, tuned_replies = _eval_side(model, held_out, config, tokenizer, generated)
    notify(Progress("eval tuned", 1, 1))
    passed, reasons = gate(config.method, base_metrics, tuned_metrics)
    report: dict[str, Any] = {
        "method": config.method,
        "base_model": ref.describe(),
        "base": base_metrics,
        "tuned": tuned_metrics,
        "gate": {"enforced": config.gate, "passed": passed, "reasons": reasons},
        "eval": {
            "source": str(config.eval_data) if config.eval_data else "held out from --data",
            "examples": held_out.size,
            "generated": len(generated),
        },
        "train": {
            "examples": result.examples,
            "steps": result.steps,
            "resumed_from": result.resumed_from,
            "tokens": result.tokens,
            "seconds": round(result.seconds, 1),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "final_loss": result.final_loss,
            "device": device,
            "threads": threads if device == "cpu" else None,
            "peak_memory_mb": round(_peak_memory_mb(device)),
        },
        "samples": [
            {"prompt": ex.prompt[-1].content, "reference": ex.reference, "base": b, "tuned": t}
            for ex, b, t in zip(generated, base_replies, tuned_replies, strict=False)
        ],
        "export": None,
        "served": None,
    }
    del model
    gc.collect()

    if config.export and (passed or not config.gate):
        notify(Progress("export", 0, 1))
        target = export_model(ref, adapter, out / MODEL_FILE, config.quant, home=home)
        report["export"] = {
            "path": str(target),
            "quant": config.quant,
            "bytes": target.stat().st_size,
        }
        if generated:
            served = _served(target, generated, config.max_new_tokens, threads)
            report["served"] = {"quant": config.quant, **task_metrics(generated, served)}
            for sample, reply in zip(report["samples"], served, strict=True):
                sample["served"] = reply
        notify(Progress("export", 1, 1))
    report["seconds"] = round(time.perf_counter() - started, 1)
    _write_json(out / "report.json", report)
    manifest["status"] = "exported" if report["export"] else "trained"
    _write_json(out / MANIFEST, manifest)
    if config.export and config.gate and not passed:
        raise TuningError(
            "The tuned model is worse than the base on the eval split ("
            + "; ".join(reasons)
            + f"), so --gate kept it from being exported. The adapter is in {adapter}; "
            f"the numbers are in {out / REPORT}."
        )
    return report
