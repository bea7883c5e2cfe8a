"""Adapting a model: LoRA supervised fine-tuning and DPO, an eval gate, export to GGUF.

The loop on a laptop CPU, with the bundled model::

    data (JSONL / datasets folder)  → validated, chat template applied, assistant-only labels
    base GGUF (+ earlier adapters)  → float32 transformers model (cached), LoRA on every linear
    train                           → checkpoints, resume, same seed → same weights
    eval base vs tuned              → loss, perplexity, exact match / containment; --gate
    export                          → LoRA merged, GGUF with the base's tokenizer and chat
                                      template, quantized by llama.cpp: lamina generate -m
                                      local:DIR/model.gguf

This package needs the ``tune`` extra (torch, transformers, peft, gguf). Importing
``lamina.tuning`` itself does not: the data layer (validation, feedback datasets) works
without it, and :mod:`lamina.tuning.run` raises :class:`~lamina.errors.MissingDependencyError`
with the install command when the extra is missing.
"""

from lamina.tuning.config import TuneConfig
from lamina.tuning.data import (
    ChatExample,
    PreferencePair,
    Turn,
    load_examples,
    load_pairs,
    split_eval,
)
from lamina.tuning.errors import DatasetError, TuningError

__all__ = [
    "ChatExample",
    "DatasetError",
    "PreferencePair",
    "TuneConfig",
    "TuningError",
    "Turn",
    "load_examples",
    "load_pairs",
    "split_eval",
]
