"""What a fine-tuning run is asked to do: one validated object, saved with the run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ALL_LINEAR", "Quant", "TuneConfig"]

Quant = Literal["q4_1", "q4_k_m", "q8_0", "f16"]
#: Every linear layer of a Llama-style block (new facts live in the MLPs as much as in
#: attention, so LoRA on q/v alone learns them more slowly).
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TuneConfig(BaseModel):
    """Options of ``lamina tune sft|dpo``; field names match the command's options."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["sft", "dpo"] = "sft"
    data: Path
    out: Path
    base: str = Field("local", description="local, local:PATH.gguf, PATH.gguf or a run folder.")
    eval_data: Path | None = Field(None, description="Eval set; else held out from data.")
    eval_fraction: float = Field(0.1, gt=0, lt=1)
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps.")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-4, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(1024, ge=16, description="Longest example in tokens.")
    lora_r: int = Field(16, ge=1)
    lora_alpha: float | None = Field(None, gt=0, description="Empty means 2 x lora_r.")
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = ALL_LINEAR
    beta: float = Field(0.1, gt=0, description="DPO: strength of the pull to the reference.")
    seed: int = 0
    save_every: int | None = Field(
        None, ge=1, description="Checkpoint every N steps; empty means about 10 per run."
    )
    keep_checkpoints: int = Field(2, ge=1)
    quant: Quant = "q8_0"
    export: bool = True
    gate: bool = False
    eval_generate: int = Field(
        32, ge=0, description="Eval items answered by generation for exact match/containment."
    )
    max_new_tokens: int = Field(64, ge=1)
    qlora: bool = False
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute each layer's activations in the backward pass instead of "
        "keeping them: far less memory for long examples, about a third more compute.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for torch; empty means the cores the machine's load leaves "
        "idle (all of them on an idle machine).",
    )

    @model_validator(mode="after")
    def _paths(self) -> TuneConfig:
        self.data = self.data.expanduser().absolute()
        self.out = self.out.expanduser().absolute()
        if self.eval_data is not None:
            self.eval_data = self.eval_data.expanduser().absolute()
        return self

    @property
    def alpha(self) -> float:
        return self.lora_alpha if self.lora_alpha is not None else 2.0 * self.lora_r

    def fingerprint(self, data_digest: str) -> str:
        """What a resumed run must share with the run it continues: everything that shapes
        the optimisation, not where outputs go or how they are exported.

        >>> a = TuneConfig(data=Path("d.jsonl"), out=Path("a"))
        >>> b = TuneConfig(data=Path("d.jsonl"), out=Path("b"), quant="q4_1", gate=True)
        >>> a.fingerprint("x") == b.fingerprint("x"), a.fingerprint("x") == a.fingerprint("y")
        (True, False)
        """
        shaping = self.model_dump(
            mode="json",
            exclude={
                "out",
                "data",
                "eval_data",
                "quant",
                "export",
                "gate",
                "eval_generate",
                "max_new_tokens",
                "keep_checkpoints",
                "device",
                "threads",
                "gradient_checkpointing",
            },
        )
        shaping["data_digest"] = data_digest
        blob = json.dumps(shaping, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
