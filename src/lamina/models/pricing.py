"""Prices per million tokens, for cost accounting. Local models cost nothing.

Prices change: add or override entries with the ``pricing`` setting
(``[pricing] "my-model" = [0.5, 1.5]`` in lamina.toml). Unknown API models cost ``None``.

>>> cost_usd("openai", "gpt-4o-mini", prompt_tokens=1_000_000, completion_tokens=0)
0.15
>>> cost_usd("local", "SmolLM2-135M-Instruct", 10, 10)
0.0
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PRICES", "cost_usd"]

# USD per 1M (input, output) tokens, list prices as published by the providers.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3-mini": (1.10, 4.40),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-3-5-sonnet-latest": (3.00, 15.00),
    "claude-3-7-sonnet-latest": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-opus-4-0": (15.00, 75.00),
}

FREE_BACKENDS = frozenset({"local", "local-batched", "scripted"})


def cost_usd(
    backend: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    extra: Mapping[str, tuple[float, float]] | None = None,
) -> float | None:
    """Cost of one call in USD, or None when the model's price is unknown."""
    if backend in FREE_BACKENDS:
        return 0.0
    price = (extra or {}).get(model) or PRICES.get(model)
    if price is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6, 10)
