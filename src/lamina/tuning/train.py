"""The training loop SFT and DPO share: batches, AdamW, checkpoints, resume, progress.

One loop, written out (no Trainer framework), so its pieces are visible and testable:

1. the order of the examples in epoch ``e`` is a permutation drawn from ``seed + e``, so the
   position in the data is just the step number, and a resumed run sees the same batches;
2. each step: pad a batch, compute the objective's loss, backpropagate into the LoRA weights
   only, clip the gradient norm to 1, AdamW step, learning rate by linear warm-up then linear
   decay to zero;
3. every ``save_every`` steps (and at the end) a checkpoint holds the adapter
   weights, the optimiser and scheduler state and the RNG state (LoRA dropout draws from
   it). It is written to a temporary folder and renamed, so ``kill -9`` at any moment leaves
   the previous checkpoint intact, and ``resume`` continues bit-for-bit where it stopped.

Objectives compute a loss from log-probabilities of the *labelled* tokens only: the output
projection (49152 x 576 for the bundled model, a fifth of its compute) runs on those positions,
not on the prompt's.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lamina.tuning.base import require
from lamina.tuning.config import TuneConfig
from lamina.tuning.encode import IGNORE, Encoded
from lamina.tuning.errors import TuningError

torch = require("torch")
F = require("torch.nn.functional", "torch")
peft = require("peft")
safetensors_torch = require("safetensors.torch", "safetensors")

__all__ = [
    "DpoObjective",
    "Objective",
    "Progress",
    "ProgressFn",
    "SftObjective",
    "TrainResult",
    "latest_checkpoint",
    "train",
]

CHECKPOINTS = "checkpoints"
TRAIN_LOG = "train_log.jsonl"


@dataclass(frozen=True)
class Progress:
    """One update for a progress display: ``done`` of ``total`` in ``phase``."""

    phase: str
    done: int
    total: int
    loss: float | None = None
    tokens_per_s: float | None = None


ProgressFn = Callable[[Progress], None]


def _pad(rows: Sequence[list[int]], value: int) -> Any:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding)."""
    return {
        "input_ids": _pad([e.input_ids for e in items], pad_id),
        "attention_mask": _pad([[1] * len(e.input_ids) for e in items], 0),
        "labels": _pad([e.labels for e in items], IGNORE),
    }


def labelled_logprobs(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Log-probability of every labelled token, and the row it belongs to.

    The decoder runs on the whole batch; the output projection only where a label is.
    """
    device = next(model.parameters()).device
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    ids = batch["input_ids"].to(device)
    hidden = inner.get_decoder()(
        input_ids=ids, attention_mask=batch["attention_mask"].to(device), use_cache=False
    ).last_hidden_state
    targets = batch["labels"][:, 1:].to(device)
    where = targets != IGNORE
    logits = inner.get_output_embeddings()(hidden[:, :-1][where]).float()
    picked = targets[where]
    logp = -F.cross_entropy(logits, picked, reduction="none")
    rows = where.nonzero()[:, 0]
    return logp, rows


class Objective(Protocol):
    """What the loop needs from a training objective."""

    size: int

    def tokens(self, indices: Sequence[int]) -> int: ...

    def collate(self, indices: Sequence[int]) -> dict[str, Any]: ...

    def prepare(self, model: Any, batch_size: int) -> None: ...

    def loss(self, model: Any, batch: dict[str, Any]) -> Any: ...

    def evaluate(self, model: Any, batch_size: int) -> dict[str, float]: ...


class SftObjective:
    """Mean negative log-likelihood of the assistant tokens."""

    def __init__(self, items: Sequence[Encoded], pad_id: int) -> None:
        self.items = list(items)
        self.size = len(self.items)
        self.pad_id = pad_id

    def tokens(self, indices: Sequence[int]) -> int:
        return sum(len(self.items[i].input_ids) for i in indices)

    def collate(self, indices: Sequence[int]) -> dict[str, Any]:
        return collate([self.items[i] for i in indices], self.pad_id)

    def prepare(self, model: Any, batch_size: int) -> None:
        pass

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        logp, _ = labelled_logprobs(model, batch)
        return -logp.mean()

    def evaluate(self, model: Any, batch_size: int) -> dict[str, float]:
        """Token-weighted loss and perplexity over every example."""
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, self.size, batch_size):
                logp, _ = labelled_logprobs(
                    model, self.collate(range(start, min(start + batch_size, self.size)))
                )
                total -= float(logp.sum())
                count += int(logp.numel())
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


class DpoObjective:
    """Direct preference optimisation (Rafailov et al. 2023), sigmoid loss.

    ``loss = -log σ(β·[(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))])`` over sequence
    log-probabilities of the replies. The reference is the starting model (the LoRA adapter
    disabled); its log-probabilities never change, so they are computed once in
    :meth:`prepare`. A batch holds the chosen sequences, then the rejected ones.
    """

    def __init__(self, pairs: Sequence[tuple[Encoded, Encoded]], pad_id: int, beta: float):
        self.pairs = list(pairs)
        self.size = len(self.pairs)
        self.pad_id = pad_id
        self.beta = beta
        self.ref: Any = None

    def tokens(self, indices: Sequence[int]) -> int:
        return sum(len(c.input_ids) + len(r.input_ids) for c, r in (self.pairs[i] for i in indices))

    def collate(self, indices: Sequence[int]) -> dict[str, Any]:
        chosen = [self.pairs[i][0] for i in indices]
        rejected = [self.pairs[i][1] for i in indices]
        batch = collate(chosen + rejected, self.pad_id)
        batch["index"] = torch.tensor(list(indices), dtype=torch.long)
        return batch

    def _sequence_logps(self, model: Any, batch: dict[str, Any]) -> Any:
        logp, rows = labelled_logprobs(model, batch)
        n = batch["input_ids"].shape[0]
        return torch.zeros(n, device=logp.device, dtype=logp.dtype).index_add(0, rows, logp)

    def prepare(self, model: Any, batch_size: int) -> None:
        """Reference log-probabilities of every pair: ``[size, 2]`` (chosen, rejected)."""
        if self.ref is not None:
            return
        out = torch.zeros(self.size, 2)
        was_training = model.training
        model.eval()
        with torch.no_grad(), model.disable_adapter():
            for start in range(0, self.size, batch_size):
                idx = list(range(start, min(start + batch_size, self.size)))
                seq = self._sequence_logps(model, self.collate(idx)).float().cpu()
                out[idx] = torch.stack(seq.chunk(2), dim=1)
        model.train(was_training)
        self.ref = out

    def _logits(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
        seq = self._sequence_logps(model, batch)
        chosen, rejected = seq.chunk(2)
        ref = self.ref[batch["index"]].to(seq.device)
        margin = (chosen - ref[:, 0]) - (rejected - ref[:, 1])
        return self.beta * margin, chosen - rejected

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        logits, _ = self._logits(model, batch)
        return -F.logsigmoid(logits).mean()

    def evaluate(self, model: Any, batch_size: int) -> dict[str, float]:
        """DPO loss against the reference (ln 2 for the reference itself), how often the
        model's own log-probability prefers the chosen reply, and by how much on average."""
        self.prepare(model, batch_size)
        losses, prefer, gaps = [], [], []
        with torch.no_grad():
            for start in range(0, self.size, batch_size):
                batch = self.collate(range(start, min(start + batch_size, self.size)))
                logits, gap = self._logits(model, batch)
                losses += (-F.logsigmoid(logits)).tolist()
                prefer += (gap > 0).float().tolist()
                gaps += gap.tolist()
        n = max(len(losses), 1)
        return {
            "loss": sum(losses) / n,
            "preference_accuracy": sum(prefer) / n,
            "logp_margin": sum(gaps) / n,
        }


@dataclass(frozen=True)
class TrainResult:
    steps: int
    total_steps: int
    examples: int
    tokens: int
    seconds: float
    final_loss: float | None
    resumed_from: int | None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _checkpoints(out: Path) -> list[Path]:
    folder = out / CHECKPOINTS
    return sorted(folder.glob("step-*")) if folder.is_dir() else []


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint (temporary folders of a killed save are ignored)."""
    found = [p for p in _checkpoints(out) if (p / "state.json").is_file()]
    return found[-1] if found else None


def _trainable(model: Any) -> list[Any]:
    return [p for p in model.parameters() if p.requires_grad]


def _save(
    out: Path, step: int, model: Any, optimizer: Any, scheduler: Any, keep: int, fingerprint: str
) -> None:
    folder = out / CHECKPOINTS
    final = folder / f"step-{step:08d}"
    tmp = folder / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {
        k: v.detach().cpu().contiguous() for k, v in peft.get_peft_model_state_dict(model).items()
    }
    safetensors_torch.save_file(weights, str(tmp / "adapter.safetensors"))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
        tmp / "trainer.pt",
    )
    (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _load(checkpoint: Path, model: Any, optimizer: Any, scheduler: Any, fingerprint: str) -> int:
    state = json.loads((checkpoint / "state.json").read_text())
    if state["fingerprint"] != fingerprint:
        raise TuningError(
            f"The checkpoint {checkpoint} was made with other data or options than these "
            "(the fingerprint differs), so --resume would mix two runs. Resume with the same "
            "options, or pass another --out to start a new run."
        )
    weights = safetensors_torch.load_file(str(checkpoint / "adapter.safetensors"))
    peft.set_peft_model_state_dict(model, weights)
    saved = torch.load(checkpoint / "trainer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"]["cpu"])
    if "cuda" in saved["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    return int(state["step"])


def _schedule(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up to the full rate over ``warmup`` steps, then linear decay to zero.

    >>> f = _schedule(10, 2)
    >>> [round(f(s), 2) for s in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.5, 0.12]
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _order(size: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return [int(i) for i in torch.randperm(size, generator=generator)]


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines of steps after ``step``: a resumed run redoes them."""
    if not path.is_file():
        return
    kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in kept))


def train(
    model: Any,
    objective: Objective,
    config: TuneConfig,
    fingerprint: str,
    *,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train the LoRA weights of ``model`` (a peft model) on ``objective``; see the module."""
    out = config.out
    per_epoch = math.ceil(objective.size / config.batch_size)
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    save_every = config.save_every or max(1, total // 10)
    optimizer = torch.optim.AdamW(_trainable(model), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total, round(config.warmup_ratio * total))
    )
    log = out / TRAIN_LOG
    step, resumed_from = 0, None
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        step = resumed_from = _load(checkpoint, model, optimizer, scheduler, fingerprint)
        _truncate_log(log, step)
    elif log.exists():
        log.unlink()
    objective.prepare(model, config.batch_size)
    model.train()
    tokens, started, loss_value = 0, time.perf_counter(), None
    if progress:
        progress(Progress("train", step, total))
    with log.open("a") as log_file:
        while step < total:
            epoch, position = divmod(step, per_epoch)
            order = _order(objective.size, config.seed, epoch)
            indices = order[position * config.batch_size : (position + 1) * config.batch_size]
            batch = objective.collate(indices)
            loss = objective.loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(_trainable(model), 1.0)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = float(loss.detach())
            tokens += objective.tokens(indices)
            elapsed = time.perf_counter() - started
            record = {
                "step": step,
                "epoch": epoch,
                "loss": loss_value,
                "lr": lr,
                "tokens": tokens,
                "seconds": round(elapsed, 3),
            }
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            if step % save_every == 0 or step == total:
                _save(out, step, model, optimizer, scheduler, config.keep_checkpoints, fingerprint)
            if progress:
                progress(Progress("train", step, total, loss_value, tokens / elapsed))
    model.eval()
    return TrainResult(
        steps=step,
        total_steps=total,
        examples=objective.size,
        tokens=tokens,
        seconds=time.perf_counter() - started,
        final_loss=loss_value,
        resumed_from=resumed_from,
    )
