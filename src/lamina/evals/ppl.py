"""Perplexity of a local GGUF model on a text, by sliding windows, computed with llama.cpp.

Tokenization: the text is tokenized by llama.cpp with the GGUF's own tokenizer
(``llama_tokenize``), special-token strings read as plain text. A BOS token is put at the
start of every window only when the GGUF says its tokenizer adds one
(``tokenizer.ggml.add_bos_token``; SmolLM2's does not); BOS is context, never scored.

Windows (the sliding-window method of the Hugging Face perplexity guide): a window holds up
to ``ctx`` tokens (BOS included), the next window starts ``stride`` text tokens later, and
each window scores only the tokens no earlier window scored, each given everything before
it in the window. So every token but the first is scored exactly once with at least
``ctx - stride`` tokens of context (fewer only near the start); without BOS the first token
of the text has no context and is not scored.

    perplexity = exp(sum of -log p(token | context) / scored tokens)

with log-probabilities from a log-softmax over the full vocabulary, in float64.

>>> windows(10, ctx=4, stride=2, bos=False)
[(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
>>> windows(3, ctx=8, stride=4, bos=True)
[(0, 3, 0)]
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lamina.errors import InvalidRequestError
from lamina.evals.run import EvalRun, RunMeta
from lamina.models.llama_private import llama_model
from lamina.settings import Settings, get_settings

__all__ = ["gguf_for_spec", "perplexity", "windows"]

DEFAULT_CTX = 512
DEFAULT_STRIDE = 256


def windows(n: int, *, ctx: int, stride: int, bos: bool) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` text-token offsets of each window over ``n`` tokens.

    The window decodes ``text[begin:end]`` (after BOS when ``bos``) and scores the tokens
    ``text[first_scored:end]``.
    """
    room = ctx - (1 if bos else 0)
    if stride < 1 or stride > room:
        raise InvalidRequestError(
            f"--stride {stride} must be between 1 and the window's {room} text tokens "
            f"(--ctx {ctx}{' minus BOS' if bos else ''}), or tokens would go unscored."
        )
    spans = []
    scored_to = 0 if bos else 1  # without BOS the first token has nothing to be predicted from
    for begin in range(0, n, stride):
        end = min(begin + room, n)
        first = max(scored_to, begin if bos else begin + 1)
        spans.append((begin, end, first))
        scored_to = end
        if end == n:
            break
    return spans


def gguf_for_spec(spec: str | None, settings: Settings) -> Path:
    """The GGUF file a model spec names; an API model is refused with the reason."""
    from lamina.models.local import bundled_model_path

    spec = spec or settings.model
    if spec.endswith(".gguf") and not spec.startswith(("local:", "local-batched:")):
        spec = f"local:{spec}"
    backend, _, name = spec.partition(":")
    if backend in ("local", "local-batched"):
        path = Path(name) if name else settings.local.model_path or bundled_model_path()
        if not path.is_file():
            raise InvalidRequestError(
                f"No GGUF model file at {str(path)!r}. Pass --model local (the bundled model) "
                f"or --model local:/path/to/model.gguf."
            )
        return path
    raise InvalidRequestError(
        f"Perplexity needs the log-probability of every token of a given text; the {backend!r} "
        f"backend of {spec!r} does not return those (chat APIs give log-probabilities only for "
        f"tokens they generate). Use a local GGUF model: --model local or "
        f"--model local:/path/to/model.gguf."
    )


def _load(path: Path, ctx: int, settings: Settings) -> Any:
    from llama_cpp import Llama

    from lamina.models.native import ensure_runtime

    ensure_runtime(path, settings)
    threads = settings.local.n_threads or os.cpu_count()
    return Llama(
        model_path=str(path),
        n_ctx=ctx,
        n_batch=min(ctx, settings.local.n_batch),
        n_gpu_layers=settings.local.n_gpu_layers,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,  # a row of logits for every position, not only the last
        verbose=False,
    )


def _token_nll(scores: np.ndarray[Any, Any], targets: list[int]) -> np.ndarray[Any, Any]:
    """-log softmax(scores[i])[targets[i]] for each row, in float64."""
    logits = scores.astype(np.float64)
    peak = logits.max(axis=1, keepdims=True)
    logsumexp = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
    return np.asarray(logsumexp - logits[np.arange(len(targets)), targets])


def perplexity(
    text: str,
    *,
    model_path: Path,
    ctx: int = DEFAULT_CTX,
    stride: int = DEFAULT_STRIDE,
    settings: Settings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalRun:
    """Sliding-window perplexity of the GGUF at ``model_path`` on ``text``."""
    settings = settings or get_settings()
    if ctx < 2:
        raise InvalidRequestError(f"--ctx {ctx} is too small: a window needs 2 tokens or more.")
    llama = _load(model_path, ctx, settings)
    try:
        model = llama_model(llama)
        bos_id = int(model.token_bos())
        bos = bool(model.add_bos_token()) and bos_id != -1
        tokens = list(model.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        if len(tokens) < (1 if bos else 2):
            raise InvalidRequestError(
                f"The text has {len(tokens)} token(s): perplexity needs at least "
                f"{1 if bos else 2} (the first token is only context without BOS)."
            )
        spans = windows(len(tokens), ctx=ctx, stride=stride, bos=bos)
        items: list[dict[str, Any]] = []
        total_nll, scored, scored_bytes = 0.0, 0, 0
        started = time.perf_counter()
        for i, (begin, end, first) in enumerate(spans):
            window = ([bos_id] if bos else []) + tokens[begin:end]
            llama.reset()
            llama.eval(window)
            offset = 1 if bos else 0  # position of text token `begin` in the window
            # Row p of the logits predicts the token at position p + 1.
            rows = [offset + t - begin - 1 for t in range(first, end)]
            targets = tokens[first:end]
            nll = _token_nll(np.asarray(llama.scores)[rows], targets) if targets else np.zeros(0)
            total_nll += float(nll.sum())
            scored += len(targets)
            scored_bytes += sum(len(model.detokenize([t])) for t in targets)
            items.append(
                {
                    "window": i,
                    "start": begin,
                    "end": end,
                    "scored": len(targets),
                    "nll": float(nll.mean()) if len(nll) else math.nan,
                    "perplexity": float(math.exp(nll.mean())) if len(nll) else math.nan,
                }
            )
            if progress:
                progress(i + 1, len(spans))
        seconds = time.perf_counter() - started
    finally:
        llama.close()
    mean = total_nll / scored
    summary = {
        "perplexity": math.exp(mean),
        "tokens": scored,
        "nll": mean,
        "bits_per_byte": total_nll / math.log(2) / max(scored_bytes, 1),
        "text_tokens": len(tokens),
        "windows": len(spans),
        "tokens_per_s": sum(end - begin for begin, end, _ in spans) / max(seconds, 1e-9),
    }
    meta = RunMeta(
        inputs={"model": str(model_path)},
        settings={
            "ctx": ctx,
            "stride": stride,
            "bos": bos,
            "tokenization": "llama.cpp tokenizer of the GGUF (llama_tokenize), special "
            f"tokens as text; BOS {'prepended to every window' if bos else 'not used'} "
            "(the GGUF's add_bos_token)",
        },
    )
    return EvalRun(kind="ppl", summary=summary, items=items, primary="perplexity", meta=meta)
