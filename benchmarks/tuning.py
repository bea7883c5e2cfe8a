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

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "tuning"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--worker", choices=("lamina", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args)
        return

    import peft
    import torch
    import transformers

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, peft {peft.__version__}; threads "
          f"{args.threads or torch.get_num_threads()}; batch {args.batch_size}, "
          f"{args.steps} steps ({args.warmup} warm-up)")  # fmt: skip
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
