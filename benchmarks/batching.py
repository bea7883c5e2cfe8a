"""Concurrent clients: LocalModel (one sequence at a time) next to BatchedLocalModel.

Each of N client threads sends ``--requests`` chat requests back to back (64-token
completions, temperature 0.7, a seed per request, no response cache) and streams the answer.
Both engines run the same GGUF, settings and requests in the same process, alternating per
concurrency level. Aggregate tokens/s = completion tokens of all requests / wall time of the
level; latency = request start to last delta; TTFT = request start to first text; tok/cpu-s =
completion tokens / CPU seconds this process used (all threads), which a busy machine distorts
less than wall time.

    python benchmarks/batching.py [--clients 1,4,8] [--requests 2] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lamina.models.base import BaseChatModel
from lamina.models.batched import BatchedLocalModel
from lamina.models.local import LocalModel, bundled_model_path
from lamina.settings import Settings

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain what a hash table is.",
    "Give me three tips for learning a new language.",
    "Describe a sunrise over the mountains.",
    "What are the benefits of regular exercise?",
    "Tell me a story about a robot who learns to paint.",
    "Summarise the plot of Romeo and Juliet.",
    "List some uses of the Python programming language.",
]


@dataclass
class Sample:
    ttft: float
    latency: float
    tokens: int


def one_request(model: BaseChatModel, prompt: str, seed: int, max_tokens: int) -> Sample:
    start = time.perf_counter()
    first = 0.0
    tokens = 0
    for delta in model.stream(prompt, temperature=0.7, seed=seed, max_tokens=max_tokens):
        if delta.text and not first:
            first = time.perf_counter() - start
        if delta.usage is not None:
            tokens = delta.usage.completion_tokens
    return Sample(first, time.perf_counter() - start, tokens)


def run_level(
    model: BaseChatModel, clients: int, requests: int, max_tokens: int
) -> tuple[float, float, list[Sample]]:
    samples: list[Sample] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        for r in range(requests):
            sample = one_request(model, PROMPTS[(i + r) % len(PROMPTS)], 1000 * i + r, max_tokens)
            with lock:
                samples.append(sample)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, time.process_time() - cpu, samples


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (both)")
    parser.add_argument("--model", default=None, help="a GGUF file (default: the bundled one)")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    settings = Settings(cache=False, max_retries=0)
    if args.threads:
        settings.local.n_threads = args.threads
    engines: dict[str, BaseChatModel] = {
        "local (lock)": LocalModel(args.model, settings=settings),
        f"batched ({args.slots} slots)": BatchedLocalModel(
            args.model, slots=args.slots, queue_size=64, settings=settings
        ),
    }
    for model in engines.values():
        model.warm_up()  # type: ignore[attr-defined]
        one_request(model, PROMPTS[0], 0, 8)  # first-call allocations out of the timings

    gguf = Path(args.model) if args.model else bundled_model_path()
    print(f"model: {gguf.name}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(
        f"{args.requests} requests per client, max_tokens={args.max_tokens}, temperature 0.7, "
        f"llama.cpp threads: {settings.local.n_threads or 'default'}\n"
    )
    header = (
        f"{'engine':<18} {'clients':>7} {'tok/s':>7} {'lat p50':>8} {'lat p95':>8} "
        f"{'ttft p50':>9} {'ttft p95':>9} {'tokens':>7} {'tok/cpu-s':>9}"
    )
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, int], float] = {}
    for clients in levels:
        for name, model in engines.items():
            wall, cpu, samples = run_level(model, clients, args.requests, args.max_tokens)
            tokens = sum(s.tokens for s in samples)
            latency = [s.latency for s in samples]
            ttft = [s.ttft for s in samples]
            results[(name, clients)] = tokens / wall
            print(
                f"{name:<18} {clients:>7} {tokens / wall:>7.1f} "
                f"{statistics.median(latency):>7.2f}s {p95(latency):>7.2f}s "
                f"{statistics.median(ttft):>8.2f}s {p95(ttft):>8.2f}s "
                f"{tokens:>7} {tokens / cpu:>9.1f}",
                flush=True,
            )
    names = list(engines)
    print()
    for clients in levels:
        speedup = results[(names[1], clients)] / results[(names[0], clients)]
        print(f"{clients} clients: batched / local aggregate tokens/s = {speedup:.2f}x")
    engines[names[1]].close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
