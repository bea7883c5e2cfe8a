"""LoRA training throughput and peak memory: Lamina's loop next to a plain transformers + peft
script with the same settings.

Both sides train the bundled SmolLM2-135M (the same float32 weights, from Lamina's cache of
the GGUF) with the same LoRA (rank 16, alpha 32, dropout 0.05, every linear layer), AdamW,
warm-up + linear decay, gradient clipping, on exactly the same token ids, labels and batches
(encoded once by Lamina: facts.jsonl, chat template, assistant-only labels). The plain script
does what a transformers user writes: ``model(input_ids, attention_mask, labels).loss``.
Each side runs in its own process (peak RSS is the process's high-water mark, model load
included), alternating, ``--runs`` times; tokens/s counts non-padding tokens over the steps
after ``--warmup``.

    python benchmarks/tuning.py [--runs 3] [--steps 12] [--batch-size 8] [--threads N]

``--grounded``: the grounded-answer experiment instead. Training examples are built from the
sample corpus and the *dev* questions (samples/qa_dev.jsonl) by ``lamina.tuning.grounded``
(the generate prompt → the pipeline's verified quote with its [n]); the bundled model is
tuned on them; then ``--strategy generate`` answers the *test* questions (samples/qa.jsonl,
none of them in the training data) with the base and with the tuned model.

    python benchmarks/tuning.py --grounded [--epochs 3] [--lr 1e-3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "tuning"


def _config(out: Path, args: argparse.Namespace) -> Any:
    from lamina.tuning.config import TuneConfig

    return TuneConfig(
        data=SAMPLES / "facts.jsonl",
        out=out,
        max_steps=args.steps,
        epochs=100,
        batch_size=args.batch_size,
        save_every=10_000,  # only the final checkpoint, after the last timed step
        threads=args.threads,
    )


def _setup(args: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """Model with LoRA, tokenizer, encoded examples: identical on both sides."""
    import peft
    import torch

    from lamina.models.local import bundled_model_path
    from lamina.settings import get_settings
    from lamina.tuning.base import BaseRef, load_base, load_tokenizer
    from lamina.tuning.data import load_examples
    from lamina.tuning.encode import encode_examples

    if args.threads:
        torch.set_num_threads(args.threads)
    config = _config(Path(tempfile.mkdtemp()), args)
    ref = BaseRef(bundled_model_path())
    home = get_settings().home
    tokenizer = load_tokenizer(ref, home)
    items = encode_examples(tokenizer, load_examples(config.data), config.max_length, "facts")
    torch.manual_seed(config.seed)
    model = peft.get_peft_model(
        load_base(ref, home),
        peft.LoraConfig(
            r=config.lora_r,
            lora_alpha=config.alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            task_type="CAUSAL_LM",
        ),
    )
    return model, tokenizer, items


def _lamina(args: argparse.Namespace) -> list[tuple[float, int]]:
    from lamina.tuning.train import SftObjective, train

    model, tokenizer, items = _setup(args)
    out = Path(tempfile.mkdtemp())
    train(model, SftObjective(items, tokenizer.pad_token_id), _config(out, args), "bench")
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return [(x["seconds"], x["tokens"]) for x in log]


def _plain(args: argparse.Namespace) -> list[tuple[float, int]]:
    """What a transformers + peft user writes, on the same batches."""
    import math

    import torch

    from lamina.tuning.train import _order, _schedule, collate

    model, tokenizer, items = _setup(args)
    config = _config(Path(tempfile.mkdtemp()), args)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.max_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total, round(config.warmup_ratio * total))
    )
    per_epoch = math.ceil(len(items) / config.batch_size)
    model.train()
    log, tokens, started = [], 0, time.perf_counter()
    for step in range(total):
        epoch, position = divmod(step, per_epoch)
        order = _order(len(items), config.seed, epoch)
        chosen = [items[i] for i in order[position * config.batch_size :][: config.batch_size]]
        batch = collate(chosen, tokenizer.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += sum(len(e.input_ids) for e in chosen)
        log.append((time.perf_counter() - started, tokens))
    return log


def _worker(side: str, args: argparse.Namespace) -> None:
    log = _lamina(args) if side == "lamina" else _plain(args)
    (t0, n0), (t1, n1) = log[args.warmup - 1], log[-1]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tokens_per_s": (n1 - n0) / (t1 - t0), "peak_mb": peak_mb}))


class _Counting:
    """A pipeline that remembers which strategy produced each answer."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.strategies: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipeline, name)

    def ask(self, question: str) -> Any:
        answer = self.pipeline.ask(question)
        self.strategies.append(answer.strategy)
        return answer


def _grounded(args: argparse.Namespace) -> None:
    from lamina.evals.rag import evaluate, load_dataset
    from lamina.models.local import LocalModel, bundled_model_path
    from lamina.rag import RagConfig, RagPipeline
    from lamina.retrieval.index import Index
    from lamina.settings import get_settings
    from lamina.tuning.config import TuneConfig
    from lamina.tuning.data import write_jsonl
    from lamina.tuning.grounded import grounded_examples
    from lamina.tuning.run import tune

    work = Path(args.work)
    index_dir = work / "index"
    settings = get_settings().model_copy(update={"cache": False})
    if args.threads:
        settings.local.n_threads = args.threads
    if not (index_dir / "lamina.sqlite").exists():
        with Index(index_dir) as index:
            index.ingest([ROOT / "samples" / "corpus"])
    dev, test = (
        load_dataset(ROOT / "samples" / "qa_dev.jsonl"),
        load_dataset(ROOT / "samples" / "qa.jsonl"),
    )
    questions = [item.question for item in dev if item.answerable]
    assert not set(questions) & {item.question for item in test}, "a test question in training"
    started = time.perf_counter()
    with Index(index_dir) as index:
        made = grounded_examples(index, questions, LocalModel(settings=settings))
    data = work / "grounded.jsonl"
    write_jsonl(data, (ex.record() for ex in made.examples))
    print(
        f"{len(made.examples)} grounded examples from {len(questions)} dev questions "
        f"({len(made.skipped)} not found) in {time.perf_counter() - started:.0f} s"
    )
    run = work / "run"
    if not (run / "model.gguf").exists():
        report = tune(
            TuneConfig(
                data=data,
                eval_data=data,
                out=run,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=4,
                max_length=2048,
                eval_generate=0,
                threads=args.threads,
            )
        )
        train = report["train"]
        print(
            f"tuned: {train['steps']} steps, {train['tokens']} tokens, {train['seconds']} s "
            f"({train['tokens_per_s']} tokens/s); train-set loss {report['base']['loss']:.3f}"
            f" -> {report['tuned']['loss']:.3f}"
        )
    print(
        f"\n{'model':8}{'containment':>13}{'token F1':>10}{'cited right':>13}{'faithful':>10}"
        f"{'own answer':>12}{'not found':>11}{'p50 s':>8}"
    )
    for name, path in (("base", bundled_model_path()), ("tuned", run / "model.gguf")):
        with Index(index_dir) as index:
            model = LocalModel(path, settings=settings)
            pipeline = _Counting(RagPipeline(index, model, config=RagConfig(strategy="generate")))
            result = evaluate(pipeline, test)  # type: ignore[arg-type]
        own = sum(s == "generate" for s in pipeline.strategies)
        print(
            f"{name:8}{result.containment:>13.1%}{result.token_f1:>10.2f}"
            f"{result.citation_accuracy:>13.1%}{result.faithfulness:>10.1%}"
            f"{own:>8}/{result.answerable:<3}{result.not_found:>11.1%}"
            f"{result.latency_p50_ms / 1000:>8.1f}"
        )
        (work / f"eval-{name}.json").write_text(result.model_dump_json(indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--worker", choices=("lamina", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--grounded", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--work", default="build/tune-grounded")
    args = parser.parse_args()
    if args.grounded:
        _grounded(args)
        return
    if args.worker:
        _worker(args.worker, args)
        return

    import peft
    import torch
    import transformers

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}, peft {peft.__version__}; threads "
        f"{args.threads or torch.get_num_threads()}; batch {args.batch_size}, "
        f"{args.steps} steps ({args.warmup} warm-up)"
    )
    results: dict[str, list[dict[str, float]]] = {"lamina": [], "plain": []}
    forward = list(sys.argv[1:])
    for _ in range(args.runs):
        for side in ("lamina", "plain"):
            done = subprocess.run(
                [sys.executable, __file__, *forward, "--worker", side],
                capture_output=True,
                text=True,
                check=True,
            )
            results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print(f"\n{'':28}{'tokens/s (median)':>20}{'runs':>28}{'peak RSS MB':>14}")
    for side, name in (("lamina", "lamina tune"), ("plain", "transformers + peft script")):
        speeds = [r["tokens_per_s"] for r in results[side]]
        peak = max(r["peak_mb"] for r in results[side])
        runs = " ".join(f"{s:.0f}" for s in speeds)
        print(f"{name:28}{statistics.median(speeds):>20.1f}{runs:>28}{peak:>14.0f}")
    ratio = statistics.median(r["tokens_per_s"] for r in results["lamina"]) / statistics.median(
        r["tokens_per_s"] for r in results["plain"]
    )
    print(f"\nratio lamina / plain: {ratio:.2f}")


if __name__ == "__main__":
    main()
