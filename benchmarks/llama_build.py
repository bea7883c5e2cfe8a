"""Raw llama.cpp speed of two or more llama-cpp-python builds of the same version, same run.

Each build gets its own virtual environment under ``build/bench-venvs/`` (the wheel from the
wheelhouse that ``scripts/llama_wheel.py`` keeps, built on demand), and a child process per
measurement, alternating between builds round by round so that load on the machine falls on
all of them alike. A measurement is prefill tokens/s of a ~850-token prompt and decode
tokens/s of 128 greedy tokens with the bundled GGUF; the table shows medians and the ratio of
each build to the first.

    python benchmarks/llama_build.py [--rounds 5] [--build NAME=CMAKE_ARGS ...]

Without --build it compares a plain native build (the old default) with the Makefile's
default (native without AMX).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.3.36"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
DEFAULT_BUILDS = [
    "native=-DGGML_NATIVE=ON",
    f"lamina=-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='{NO_AMX}' -DCMAKE_CXX_FLAGS='{NO_AMX}'",
]

MEASURE = r"""
import json, sys, time
from llama_cpp import Llama
path, threads, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = Llama(model_path=path, n_ctx=2048, n_batch=512, n_threads=threads,
            n_threads_batch=threads, verbose=False)
passage = ("Retrieval-augmented generation grounds a language model's answer in passages "
           "fetched from a document collection. The retriever scores passages against the "
           "question, the best ones are packed into the prompt. ") * 16
tokens = llm.tokenize(passage.encode())
llm.eval(tokens[:8]); llm.reset()  # warm the weights into the caches
start = time.perf_counter()
llm.eval(tokens)
prefill = len(tokens) / (time.perf_counter() - start)
start = time.perf_counter()
for _ in range(max_tokens):
    llm.eval([llm.sample(temp=0.0)])
decode = max_tokens / (time.perf_counter() - start)
print(json.dumps({"prompt_tokens": len(tokens), "prefill": prefill, "decode": decode}))
"""


def build_env(name: str, cmake_args: str) -> Path:
    """A venv holding the wheel built with ``cmake_args`` (built once, then reused)."""
    wheel = subprocess.run(
        [sys.executable, str(ROOT / "scripts/llama_wheel.py"), VERSION, cmake_args,
         str(Path.home() / ".cache/lamina/wheels")],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    home = ROOT / "build" / "bench-venvs" / name
    python = home / "bin" / "python"
    stamp = home / ".wheel"
    if not stamp.is_file() or stamp.read_text() != wheel:
        venv.create(home, with_pip=True, clear=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, wheel], check=True)
        stamp.write_text(wheel)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="append", help="NAME=CMAKE_ARGS; repeatable")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from lamina.models.local import bundled_model_path
    from lamina.models.native import cpu_model, notable_features

    model = bundled_model_path()
    builds = dict(b.split("=", 1) for b in args.build or DEFAULT_BUILDS)
    pythons = {name: build_env(name, cmake) for name, cmake in builds.items()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for _ in range(args.rounds):
        for name, python in pythons.items():
            out = subprocess.run(
                [str(python), "-c", MEASURE, str(model), str(args.threads), str(args.max_tokens)],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            results[name].append(json.loads(out.splitlines()[-1]))

    print(
        f"{cpu_model()} ({platform.machine()}; {' '.join(notable_features())}), "
        f"{args.threads} threads; llama-cpp-python {VERSION}; {model.name}; "
        f"{args.rounds} alternating rounds, prompt "
        f"{int(results[next(iter(builds))][0]['prompt_tokens'])} tokens, "
        f"{args.max_tokens} decoded tokens, load average {os.getloadavg()[0]:.2f}\n"
    )
    header = (
        f"{'build':10} | {'prefill tok/s':>13} {'ratio':>6} | {'decode tok/s':>12} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    first: tuple[float, float] | None = None
    for name in builds:
        prefill = statistics.median(r["prefill"] for r in results[name])
        decode = statistics.median(r["decode"] for r in results[name])
        first = first or (prefill, decode)
        print(
            f"{name:10} | {prefill:>13.0f} {prefill / first[0]:>6.3f} | "
            f"{decode:>12.1f} {decode / first[1]:>6.3f}"
        )
    for name, cmake in builds.items():
        print(f"  {name}: {cmake}")


if __name__ == "__main__":
    main()
