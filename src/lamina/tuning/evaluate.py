"""Before/after evaluation on the eval split, and the gate that can refuse an export.

The base is the same model with the LoRA adapter switched off, so both sides run the same
code on the same numbers; the exported GGUF is quantized afterwards (``--quant``), which moves
its answers a little (docs/tuning.md has the round-trip measurement).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lamina.tuning.base import require
from lamina.tuning.data import ChatExample, Turn
from lamina.tuning.encode import render
from lamina.tuning.metrics import contains, exact_match

__all__ = ["gate", "generate", "task_metrics"]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[Turn]],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy replies to chat prompts, batched (left-padded), without special tokens."""
    torch = require("torch")
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [
                render(tokenizer, p, generation_prompt=True)
                for p in prompts[start : start + batch_size]
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(
                    input_ids=enc["input_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                )
            width = enc["input_ids"].shape[1]
            replies += [
                tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out
            ]
    finally:
        tokenizer.padding_side = side
    return replies


def task_metrics(examples: Sequence[ChatExample], replies: Sequence[str]) -> dict[str, float]:
    """Exact match and containment of each example's ``answers`` (else its reference reply).

    >>> from lamina.tuning.data import parse_example
    >>> ex = parse_example({"prompt": "Mascot?", "completion": "It is Pixel.",
    ...                     "answers": ["Pixel"]}, "x:1")
    >>> task_metrics([ex, ex], ["Pixel", "I do not know."])
    {'exact_match': 0.5, 'containment': 0.5}
    """
    n = max(len(replies), 1)
    refs = [list(ex.answers) or [ex.reference] for ex in examples]
    return {
        "exact_match": sum(exact_match(r, a) for r, a in zip(replies, refs, strict=False)) / n,
        "containment": sum(contains(r, a) for r, a in zip(replies, refs, strict=False)) / n,
    }


def gate(
    method: str, base: Mapping[str, float], tuned: Mapping[str, float]
) -> tuple[bool, list[str]]:
    """Whether the tuned model is at least as good as the base, and the reasons if not.

    SFT: eval loss must not rise, and containment (when measured) must not fall. DPO: the
    loss against the reference must not rise, nor preference accuracy fall.

    >>> gate("sft", {"loss": 2.0, "containment": 0.5}, {"loss": 1.2, "containment": 0.25})
    (False, ['containment 25.0% < base 50.0%'])
    """
    reasons = []
    if tuned["loss"] > base["loss"]:
        reasons.append(f"eval loss {tuned['loss']:.4f} > base {base['loss']:.4f}")
    quality = "containment" if method == "sft" else "preference_accuracy"
    if quality in tuned and quality in base and tuned[quality] < base[quality]:
        reasons.append(
            f"{quality.replace('_', ' ')} {tuned[quality]:.1%} < base {base[quality]:.1%}"
        )
    return not reasons, reasons
