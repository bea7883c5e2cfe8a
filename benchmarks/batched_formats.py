"""Which GGUF format should batched serving use? Raw ceilings and quality, one run.

For the bundled SmolLM2-135M (Q4_1, token embeddings Q8_0) and conversions of it made with
llama.cpp's quantizer (formats ggml repacks for its batched CPU kernels on this machine:
Q4_0 and IQ4_NL on AVX2; Q8_0 only on ARM), measure in a child process per format:

- raw ``llama_decode`` throughput: one sequence decoding 64 steps, and 8 sequences decoding
  64 steps together (8 tokens per batch); tokens/s and tokens per CPU-second;
- quality: perplexity on held-out text (docs/rag.md and docs/architecture.md, which the model
  never saw), 512-token windows, and the greedy answers to 8 prompts, compared with Q4_1.

    python benchmarks/batched_formats.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lamina.models.local import bundled_model_path  # noqa: E402
from lamina.models.native import cpu_model, notable_features  # noqa: E402
from lamina.models.quantize import requantize  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain what a hash table is in one sentence.",
    "List three primary colours.",
    "Who wrote Romeo and Juliet?",
    "What is 12 times 12?",
    "Give one tip for learning a new language.",
    "What does a CPU do?",
]

CHILD = r"""
import json, math, sys, time
import numpy as np
import llama_cpp
from llama_cpp import Llama

path, threads, text_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
prompts = json.loads(sys.argv[4])
STEPS, SEQS, CTX = 64, 8, 256

def decode_rate(n_seq):
    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = CTX * SEQS
    cparams.n_batch = 512
    cparams.n_seq_max = SEQS
    cparams.n_threads = cparams.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    batch = llama_cpp.llama_batch_init(512, 0, SEQS)
    def run(tokens):  # tokens: list of (token, pos, seq)
        batch.n_tokens = len(tokens)
        for i, (tok, pos, seq) in enumerate(tokens):
            batch.token[i] = tok; batch.pos[i] = pos
            batch.n_seq_id[i] = 1; batch.seq_id[i][0] = seq; batch.logits[i] = True
        assert llama_cpp.llama_decode(ctx, batch) == 0
    run([(1 + s, 0, s) for s in range(n_seq)])  # warm up
    wall, cpu = time.perf_counter(), time.process_time()
    for step in range(1, STEPS + 1):
        run([(100 + step + s, step, s) for s in range(n_seq)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    llama_cpp.llama_batch_free(batch); llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return STEPS * n_seq / wall, STEPS * n_seq / cpu

one, one_cpu = decode_rate(1)
eight, eight_cpu = decode_rate(SEQS)

llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads, logits_all=True,
            verbose=False)
tokens = llm.tokenize(open(text_file, encoding="utf-8").read().encode(), add_bos=False)
nll, count = 0.0, 0
for start in range(0, len(tokens) - 1, 511):
    window = [llm.token_bos()] + tokens[start:start + 511]
    llm.reset(); llm.eval(window)
    logits = np.asarray(llm.scores[:len(window)], dtype=np.float64)
    for i in range(1, len(window) - 1):
        row = logits[i]
        peak = row.max()
        nll -= row[window[i + 1]] - peak - math.log(np.exp(row - peak).sum())
        count += 1
answers = []
chat = Llama(model_path=path, n_ctx=1024, n_threads=threads, verbose=False)
for prompt in prompts:
    out = chat.create_chat_completion(messages=[{"role": "user", "content": prompt}],
                                      temperature=0.0, max_tokens=48)
    answers.append(out["choices"][0]["message"]["content"])
print(json.dumps({"one": one, "one_cpu": one_cpu, "eight": eight, "eight_cpu": eight_cpu,
                  "ppl": math.exp(nll / count), "ppl_tokens": count, "answers": answers}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--formats", default="q4_1,q4_0,iq4_nl,q8_0,q4_0+emb", help="'+emb': embeddings too"
    )
    args = parser.parse_args()
    source = bundled_model_path()
    text = "\n\n".join((ROOT / p).read_text() for p in ("docs/rag.md", "docs/architecture.md"))
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "heldout.txt"
        text_file.write_text(text)
        rows: dict[str, dict[str, object]] = {}
        for fmt in args.formats.split(","):
            quant, _, emb = fmt.partition("+")
            path = source
            if fmt != "q4_1":
                path = Path(tmp) / f"{fmt}.gguf"
                requantize(source, path, quant, token_embedding_type=quant if emb else None)
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), str(args.threads), str(text_file),
                 json.dumps(PROMPTS)],
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            rows[fmt] = {**json.loads(out.splitlines()[-1]), "mb": path.stat().st_size / 1e6}
    print(
        f"{source.name} and conversions; {cpu_model()} ({' '.join(notable_features())}); "
        f"{args.threads} threads; load average {os.getloadavg()[0]:.2f}\n"
    )
    base = rows["q4_1"]
    header = (
        f"{'format':10} {'MB':>6} | {'1 seq tok/s':>11} {'8 seq tok/s':>11} {'8/1':>5} "
        f"{'tok/cpu-s 1':>11} {'8':>7} | {'ppl':>7} {'Δppl':>7} {'same answers':>12}"
    )
    print(header)
    print("-" * len(header))
    for fmt, r in rows.items():
        same = sum(a == b for a, b in zip(r["answers"], base["answers"], strict=True))  # type: ignore[call-overload]
        delta = r["ppl"] / base["ppl"] - 1  # type: ignore[operator]
        print(
            f"{fmt:10} {r['mb']:>6.1f} | {r['one']:>11.1f} {r['eight']:>11.1f} "
            f"{r['eight'] / r['one']:>5.2f} {r['one_cpu']:>11.1f} {r['eight_cpu']:>7.1f} | "  # type: ignore[operator]
            f"{r['ppl']:>7.3f} {delta:>+7.2%} {same:>9}/{len(PROMPTS)}"
        )


if __name__ == "__main__":
    main()
