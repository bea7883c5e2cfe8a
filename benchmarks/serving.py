"""Concurrent HTTP clients: `lamina serve --model local-batched` next to llama_cpp.server.

One run starts both servers on loopback ports with the same GGUF (the bundled one unless
``--model``), the same 8192-token context and the same llama.cpp thread count, waits until both
answer, warms each up, then for each number of concurrent clients runs the same streamed chat
requests against each server in turn (which one goes first alternates per level). Every client
thread sends its requests back to back; requests use ``max_tokens`` (64), temperature 0.7 and a
seed per request, the same on both servers, and prompts that ask for long answers, so nearly
every completion runs to ``max_tokens`` (the ``len`` column counts those that did).

Aggregate tokens/s = completion tokens of all requests of a level / its wall time; latency =
request sent to the last byte; TTFT = request sent to the first streamed text; tok/cpu-s =
completion tokens / CPU seconds the server process used in the level (all its threads), which
other load on a shared machine distorts much less than wall time. Completion tokens
come from the stream's usage (``stream_options.include_usage``) where the server reports it
(Lamina); llama_cpp.server 0.3 sends no usage in streams, so there it is the number of content
chunks (one per generated token, checked against the usage of a non-streamed request at warm-up).

llama_cpp.server runs with ``--interrupt_requests False``: its default cuts a stream short as
soon as another request waits, which would hand it short completions under concurrency. It also
gets ``--n_threads`` equal to Lamina's (all cores by default; its own default is half of them).

Both servers are shut down at the end, on error or Ctrl-C too. The load average is printed per
level: on a shared machine the ratios measured in one run mean more than absolute numbers.

    python benchmarks/serving.py [--clients 1,4,8] [--requests 2] [--min-requests 8]
                                 [--threads N] [--lamina-model local-batched]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from lamina.models.local import bundled_model_path

PROMPTS = [
    "Write a long, detailed essay about the history of the Roman Empire.",
    "Explain in detail how a computer processor works, step by step.",
    "Write a long story about a dragon who wants to become a baker.",
    "Describe, in as much detail as you can, a walk through a busy city market.",
    "Write a detailed guide to growing tomatoes at home, from seed to harvest.",
    "Explain the water cycle thoroughly, with examples from around the world.",
    "Write a long letter to a friend describing your summer holiday.",
    "Describe in detail the causes and consequences of the Industrial Revolution.",
]
TEMPERATURE = 0.7


@dataclass
class Sample:
    ttft: float
    latency: float
    tokens: int
    finish: str | None


@dataclass
class Server:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    health: str
    reports_usage: bool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(
    name: str, args: list[str], port: int, health: str, env: dict[str, str], workdir: Path
) -> Iterator[Server]:
    """A server process, logging to a file; always stopped (SIGTERM, then SIGKILL) on exit."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True
        )
    srv = Server(name, f"http://127.0.0.1:{port}", proc, log, health, name == "lamina")
    try:
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_healthy(servers: list[Server], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(servers)
    while pending:
        for srv in list(pending):
            if srv.proc.poll() is not None:
                tail = srv.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{srv.name} exited with {srv.proc.returncode}:\n{tail}")
            try:
                if httpx.get(srv.base + srv.health, timeout=2).status_code == 200:
                    pending.remove(srv)
            except httpx.TransportError:
                pass
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise RuntimeError(f"{names} not healthy within {timeout_s:.0f} s")
        time.sleep(0.2)


def body(prompt: str, seed: int, max_tokens: int, stream: bool) -> dict[str, object]:
    payload: dict[str, object] = {
        "model": "lamina",  # llama_cpp.server serves its one model whatever the name
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": TEMPERATURE,
        "seed": seed,
        "stream": stream,
    }
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return payload


def one_request(http: httpx.Client, srv: Server, prompt: str, seed: int, max_tokens: int) -> Sample:
    start = time.perf_counter()
    first = 0.0
    chunks = 0
    usage: int | None = None
    finish: str | None = None
    url = srv.base + "/v1/chat/completions"
    with http.stream("POST", url, json=body(prompt, seed, max_tokens, True)) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                usage = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                if choice.get("delta", {}).get("content"):
                    chunks += 1
                    if not first:
                        first = time.perf_counter() - start
                finish = choice.get("finish_reason") or finish
    tokens = usage if usage is not None else chunks
    return Sample(first, time.perf_counter() - start, tokens, finish)


def usage_check(http: httpx.Client, srv: Server, max_tokens: int) -> str:
    """Streamed token count vs the usage of the same request non-streamed (same seed)."""
    streamed = one_request(http, srv, PROMPTS[1], 7, max_tokens).tokens
    reply = http.post(
        srv.base + "/v1/chat/completions", json=body(PROMPTS[1], 7, max_tokens, False)
    )
    reply.raise_for_status()
    reported = reply.json()["usage"]["completion_tokens"]
    return f"{srv.name}: streamed count {streamed}, non-streamed usage {reported}"


def run_level(
    srv: Server, clients: int, per_client: int, max_tokens: int
) -> tuple[float, list[Sample]]:
    samples: list[Sample] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        try:
            with httpx.Client(timeout=300) as http:
                for r in range(per_client):
                    prompt = PROMPTS[(i + r) % len(PROMPTS)]
                    sample = one_request(http, srv, prompt, 1000 * i + r, max_tokens)
                    with lock:
                        samples.append(sample)
        except BaseException as exc:  # reported after the level
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{srv.name}, {clients} clients: {errors[0]!r}") from errors[0]
    return time.perf_counter() - start, samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", default="1,4,8", help="concurrency levels")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument(
        "--min-requests", type=int, default=8, help="at least this many requests per level"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--model", default=None, help="a GGUF file (default: the bundled one)")
    parser.add_argument("--startup-timeout", type=float, default=120)
    parser.add_argument(
        "--lamina-model", default="local-batched", help="what lamina serves (e.g. local)"
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    levels = [int(c) for c in args.clients.split(",")]
    gguf = Path(args.model) if args.model else bundled_model_path()
    began = time.perf_counter()

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lamina-bench-")))
        env = {
            **os.environ,
            "LAMINA_HOME": str(workdir / "home"),  # no keys, no cache, no traces of the user's
            "LAMINA_CACHE": "false",
            "LAMINA_LOCAL__N_THREADS": str(args.threads),
            "LAMINA_LOCAL__N_CTX": "8192",
            "LAMINA_SERVER__LOCAL_TRACES": "false",
            "LAMINA_SERVER__LOG_LEVEL": "WARNING",
        }
        env.pop("LAMINA_CONFIG", None)
        p1, p2 = free_port(), free_port()
        llama_args = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
            "--host", "127.0.0.1", "--port", str(p1), "--n_ctx", "8192",
            "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
            "--interrupt_requests", "False", "--verbose", "False",
        ]  # fmt: skip
        lamina_args = [
            sys.executable, "-m", "lamina", "serve", "--model", args.lamina_model,
            "--host", "127.0.0.1", "--port", str(p2),
        ]  # fmt: skip
        llama = stack.enter_context(server("llama_cpp", llama_args, p1, "/v1/models", env, workdir))
        lamina = stack.enter_context(server("lamina", lamina_args, p2, "/health", env, workdir))
        servers = [llama, lamina]
        wait_healthy(servers, args.startup_timeout)

        with httpx.Client(timeout=300) as http:
            checks = []
            for srv in servers:  # warm-up: first-call allocations out of the timings
                one_request(http, srv, PROMPTS[0], 0, 8)
                checks.append(usage_check(http, srv, args.max_tokens))

        print(
            f"model: {gguf.name}; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, llama.cpp threads {args.threads}, n_ctx 8192 (both); "
            f"load average at start {os.getloadavg()[0]:.2f}"
        )
        batched = args.lamina_model.startswith("local-batched")
        print(
            f"llama_cpp.server --interrupt_requests False; lamina serve --model "
            f"{args.lamina_model}"
            + (" (8 slots x 1024 tokens, admission concurrency 8)" if batched else "")
        )
        print(f"max_tokens={args.max_tokens}, temperature {TEMPERATURE}, seed per request")
        print("token counts: " + "; ".join(checks) + "\n")
        header = (
            f"{'server':<10} {'clients':>7} {'reqs':>5} {'tok/s':>7} {'lat p50':>8} "
            f"{'lat p95':>8} {'ttft p50':>9} {'tokens':>7} {'len':>5} {'tok/cpu-s':>9} "
            f"{'load':>5}"
        )
        print(header)
        print("-" * len(header))
        results: dict[tuple[str, int], tuple[float, float, float]] = {}
        for index, clients in enumerate(levels):
            per_client = max(args.requests, math.ceil(args.min_requests / clients))
            order = servers if index % 2 == 0 else servers[::-1]
            for srv in order:
                cpu = cpu_seconds(srv.proc.pid)
                wall, samples = run_level(srv, clients, per_client, args.max_tokens)
                cpu = cpu_seconds(srv.proc.pid) - cpu
                tokens = sum(s.tokens for s in samples)
                latency = [s.latency for s in samples]
                ttft = statistics.median(s.ttft for s in samples)
                full = sum(s.finish == "length" for s in samples)
                results[(srv.name, clients)] = (tokens / wall, statistics.median(latency), ttft)
                print(
                    f"{srv.name:<10} {clients:>7} {len(samples):>5} {tokens / wall:>7.1f} "
                    f"{statistics.median(latency):>7.2f}s {p95(latency):>7.2f}s "
                    f"{ttft:>8.2f}s {tokens:>7} {full:>2}/{len(samples):<2} "
                    f"{tokens / cpu:>9.1f} {os.getloadavg()[0]:>5.1f}",
                    flush=True,
                )
        print()
        for clients in levels:
            (l_tps, l_lat, l_ttft), (r_tps, r_lat, r_ttft) = (
                results[("lamina", clients)],
                results[("llama_cpp", clients)],
            )
            print(
                f"{clients} clients, Lamina / llama_cpp.server: tokens/s {l_tps / r_tps:.2f}x, "
                f"median latency {l_lat / r_lat:.2f}x, median TTFT {l_ttft / r_ttft:.2f}x"
            )
        print(
            f"\nload average at end {os.getloadavg()[0]:.2f}; "
            f"total {time.perf_counter() - began:.0f} s"
        )


if __name__ == "__main__":
    main()
