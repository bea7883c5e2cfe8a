"""Single-stream generation speed: Lamina's local backend next to raw llama-cpp-python.

Both run the same GGUF with the same context, batch and thread settings, the same chat
messages and greedy decoding, alternating, with the KV cache cleared before every run so each
prompt is evaluated in full. Prompt tokens/s = prompt tokens / time to first token; decode
tokens/s = (completion tokens - 1) / (time after the first token).

    python benchmarks/generation.py [--runs 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import llama_cpp

from lamina.models.local import LocalModel, bundled_model_path
from lamina.settings import Settings
from lamina.types import Message

PASSAGE = (
    "Retrieval-augmented generation grounds a language model's answer in passages fetched "
    "from a document collection. The retriever scores passages against the question, the "
    "best ones are packed into the prompt, and the model is asked to answer from them. "
)
PROMPTS = {
    "short": "Write a short poem about the sea.",
    "medium": PASSAGE * 4 + "Summarise the text above in three bullet points.",
    "long": PASSAGE * 16 + "Summarise the text above in three bullet points.",
}


def timed(stream: Iterator[Any], is_text: Callable[[Any], bool]) -> tuple[float, float, int]:
    """(time to first token, total time, number of text chunks) of a stream.

    Both engines emit one chunk per generated token (a chunk with no text, held back while it
    might start a stop string, is not counted: there are none here, as no stop is set)."""
    start = time.perf_counter()
    first = 0.0
    chunks = 0
    for item in stream:
        if is_text(item):
            chunks += 1
            if chunks == 1:
                first = time.perf_counter() - start
    return first, time.perf_counter() - start, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    path = bundled_model_path()
    settings = Settings(cache=False)
    threads = settings.local.n_threads or os.cpu_count()
    lamina = LocalModel(path, settings=settings)
    lamina.warm_up()
    raw = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=settings.local.n_ctx,
        n_batch=settings.local.n_batch,
        n_threads=threads,
        verbose=False,
    )

    print(
        f"model: {path.name}; llama-cpp-python {llama_cpp.__version__}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{threads} threads; {args.runs} runs, max_tokens={args.max_tokens}, greedy\n"
    )
    header = (
        f"{'prompt':8} {'tokens':>6} | {'prefill tok/s':>13} {'raw':>8} {'ratio':>6} | "
        f"{'decode tok/s':>12} {'raw':>8} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    ratios: list[tuple[float, float]] = []
    for name, text in PROMPTS.items():
        messages = [Message.user(text)]
        n_prompt = lamina.count_tokens(messages)
        ours: list[tuple[float, float, int]] = []
        theirs: list[tuple[float, float, int]] = []
        for _ in range(args.runs):
            lamina.llama.reset()
            ours.append(
                timed(
                    lamina.stream(messages, temperature=0, max_tokens=args.max_tokens),
                    lambda d: bool(d.text),
                )
            )
            raw.reset()
            theirs.append(
                timed(
                    raw.create_chat_completion(
                        messages=[m.model_dump() for m in messages],
                        temperature=0.0,
                        max_tokens=args.max_tokens,
                        stream=True,
                    ),
                    lambda c: bool(c["choices"][0]["delta"].get("content")),
                )
            )
        prefill = statistics.median(n_prompt / f for f, _, _ in ours)
        prefill_raw = statistics.median(n_prompt / f for f, _, _ in theirs)
        decode = statistics.median((n - 1) / (t - f) for f, t, n in ours)
        decode_raw = statistics.median((n - 1) / (t - f) for f, t, n in theirs)
        ratios.append((prefill / prefill_raw, decode / decode_raw))
        print(
            f"{name:8} {n_prompt:>6} | {prefill:>13.0f} {prefill_raw:>8.0f} "
            f"{prefill / prefill_raw:>6.2f} | {decode:>12.1f} {decode_raw:>8.1f} "
            f"{decode / decode_raw:>6.2f}"
        )
    print(
        f"\ngeometric-mean ratio Lamina/raw: prefill "
        f"{statistics.geometric_mean(p for p, _ in ratios):.3f}, decode "
        f"{statistics.geometric_mean(d for _, d in ratios):.3f}"
    )


if __name__ == "__main__":
    main()
