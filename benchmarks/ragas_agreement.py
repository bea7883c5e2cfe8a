"""Agreement of Lamina's judged RAG metrics with the ragas library, same samples, same judge.

    .venv/bin/python benchmarks/ragas_agreement.py [--questions N] [--out build/ragas.json]

1. Ingest ``samples/corpus`` into a scratch index and answer the answerable questions of
   ``samples/qa.jsonl`` with Lamina's RAG pipeline (the default extract strategy): each
   sample is (question, answer, the passages in the prompt, the first reference answer).
2. Start ``lamina serve`` on a free loopback port (no keys) in a subprocess: the judge is the
   model it serves (the bundled SmolLM2-135M unless LAMINA_SERVER__MODEL says otherwise) and
   ``minilm`` is the embedder, for both sides.
3. Lamina: :class:`lamina.evals.judge.Judge` with ``openai:lamina@http://127.0.0.1:PORT/v1``.
   ragas: ``ragas.evaluate`` with Faithfulness, ResponseRelevancy,
   LLMContextPrecisionWithReference and LLMContextRecall, its LLM a langchain ``ChatOpenAI``
   and its embeddings ``OpenAIEmbeddings`` pointed at the same server.
4. Per metric: items both scored, Pearson and Spearman correlation, mean absolute difference,
   and how many items each side failed to score (NaN / a recorded judge error).

Runs offline: nothing but the loopback server is contacted (ragas' usage analytics are
turned off with RAGAS_DO_NOT_TRACK; OpenAIEmbeddings is told not to fetch a tiktoken
vocabulary).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A 135M judge on a busy 2-core machine can take minutes per grammar-constrained reply.
os.environ.setdefault("LAMINA_TIMEOUT_S", "1800")
os.environ.setdefault("LAMINA_SERVER__REQUEST_TIMEOUT_S", "1800")

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
RAGAS_NAMES = {
    "faithfulness": "faithfulness",
    "answer_relevancy": "answer_relevancy",
    "context_precision": "llm_context_precision_with_reference",
    "context_recall": "context_recall",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    # Four requests at once with a 4096-token window each: ragas' prompts carry few-shot
    # examples and every context, more than the default 8 slots x 1024 tokens hold.
    env = {
        "LAMINA_LOCAL__N_CTX": "16384",
        "LAMINA_LOCAL__SLOTS": "4",
        **os.environ,
        "LAMINA_HOME": str(home),
    }
    log = home / "serve.log"  # a file, not a pipe nobody reads: a full pipe would stall it
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lamina", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lamina serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, f"{base}/v1"
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("lamina serve did not start in 120 s")


def make_samples(index_dir: Path, limit: int | None, contexts: int) -> list[dict[str, Any]]:
    from lamina.evals.rag import evaluate, load_dataset
    from lamina.models import get_model
    from lamina.rag import RagPipeline
    from lamina.rag.citations import strip_markers
    from lamina.retrieval.index import Index

    items = [i for i in load_dataset(ROOT / "samples" / "qa.jsonl") if i.answerable]
    items = items[:limit] if limit else items
    index = Index(index_dir)
    index.ingest([ROOT / "samples" / "corpus"])
    result = evaluate(RagPipeline(index, get_model("local")), items)
    index.close()
    return [
        {
            "user_input": r.question,
            "response": strip_markers(r.answer),
            "retrieved_contexts": [" ".join(c.split()) for c in r.contexts[:contexts]],
            "reference": r.reference,
        }
        for r in result.items
        if r.found and r.contexts and r.reference
    ]


def lamina_scores(
    samples: list[dict[str, Any]], base_url: str, partial: Path
) -> list[dict[str, Any]]:
    from lamina.errors import LaminaError
    from lamina.evals.judge import Judge, JudgeSample
    from lamina.models import get_model
    from lamina.models.embeddings import get_embedder

    judge = Judge(get_model(f"openai:lamina@{base_url}"), get_embedder("minilm"))
    scored = []
    for n, s in enumerate(samples, start=1):
        sample = JudgeSample(
            s["user_input"], s["response"], s["retrieved_contexts"], s["reference"]
        )
        try:
            judged = judge.score(sample)
            scored.append({"values": judged.values, "errors": judged.errors})
        except LaminaError as exc:  # a timeout of the busy server: count it, go on
            scored.append({"values": {}, "errors": {"all": str(exc)}})
        partial.write_text(json.dumps(scored, indent=2))  # kept if the ragas side fails
        print(f"  lamina {n}/{len(samples)}", file=sys.stderr, flush=True)
    return scored


def ragas_scores(samples: list[dict[str, Any]], base_url: str) -> list[dict[str, float]]:
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    from ragas import EvaluationDataset, RunConfig, evaluate
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper
    from ragas.metrics import (
        Faithfulness,
        LLMContextPrecisionWithReference,
        LLMContextRecall,
        ResponseRelevancy,
    )

    # ragas 0.2 asks for one completion per call (n=1): what lamina serve accepts. 256 tokens
    # hold the longest JSON these prompts ask for; a small model that rambles stops there.
    chat = ChatOpenAI(model="lamina", base_url=base_url, api_key="unused", max_tokens=256)
    llm = LangchainLLMWrapper(chat)
    embeddings = LangchainEmbeddingsWrapper(
        OpenAIEmbeddings(
            model="minilm",
            base_url=base_url,
            api_key="unused",  # type: ignore[arg-type]
            check_embedding_ctx_length=False,  # else it downloads a tiktoken vocabulary
        )
    )
    result = evaluate(
        EvaluationDataset.from_list(samples),
        metrics=[
            Faithfulness(),
            ResponseRelevancy(),
            LLMContextPrecisionWithReference(),
            LLMContextRecall(),
        ],
        llm=llm,
        embeddings=embeddings,
        run_config=RunConfig(timeout=1800, max_retries=2, max_workers=4),
        raise_exceptions=False,
    )
    rows: list[dict[str, float]] = result.to_pandas().to_dict("records")
    return [{m: float(row.get(RAGAS_NAMES[m], math.nan)) for m in METRICS} for row in rows]


def agreement(ours: list[float | None], theirs: list[float]) -> dict[str, Any]:
    from scipy import stats

    pairs = [
        (a, b)
        for a, b in zip(ours, theirs, strict=True)
        if a is not None and not math.isnan(a) and not math.isnan(b)
    ]
    row: dict[str, Any] = {
        "pairs": len(pairs),
        "lamina_unscored": sum(a is None for a in ours),
        "ragas_unscored": sum(math.isnan(b) for b in theirs),
        "lamina_mean": None,
        "ragas_mean": None,
        "pearson": None,
        "spearman": None,
        "mad": None,
    }
    if pairs:
        xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
        row["lamina_mean"] = sum(xs) / len(xs)
        row["ragas_mean"] = sum(ys) / len(ys)
        row["mad"] = sum(abs(a - b) for a, b in pairs) / len(pairs)
        if len(pairs) > 2 and len(set(xs)) > 1 and len(set(ys)) > 1:
            row["pearson"] = float(stats.pearsonr(xs, ys).statistic)
            row["spearman"] = float(stats.spearmanr(xs, ys).statistic)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=None, help="first N answerable only")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "ragas_agreement.json")
    parser.add_argument(
        "--contexts", type=int, default=6, help="keep the top N passages of each answer"
    )
    args = parser.parse_args()
    import ragas

    with tempfile.TemporaryDirectory(prefix="lamina-ragas-") as scratch:
        home = Path(scratch) / "home"
        os.environ["LAMINA_HOME"] = str(home)
        started = time.perf_counter()
        samples = make_samples(Path(scratch) / "index", args.questions, args.contexts)
        print(f"{len(samples)} answered samples", file=sys.stderr)
        server, base_url = start_server(home)
        try:
            # Both sides at once: the server batches requests, so the pair takes less time.
            with ThreadPoolExecutor(1) as pool:
                t0 = time.perf_counter()
                partial = args.out.with_suffix(".lamina-partial.json")
                partial.parent.mkdir(parents=True, exist_ok=True)
                pending = pool.submit(lamina_scores, samples, base_url, partial)
                theirs = ragas_scores(samples, base_url)
                ragas_s = time.perf_counter() - t0
                ours = pending.result()
                lamina_s = time.perf_counter() - t0
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:  # still draining a request nobody waits for
                server.kill()
                server.wait()
    table = {m: agreement([o["values"].get(m) for o in ours], [t[m] for t in theirs])
             for m in METRICS}  # fmt: skip
    report = {
        "samples": len(samples),
        "judge": "lamina serve (default model) via the OpenAI API",
        "ragas": ragas.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "lamina_s": round(lamina_s, 1),
        "ragas_s": round(ragas_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
        "agreement": table,
        "lamina_errors": [o["errors"] for o in ours],
        "items": [
            {"sample": s, "lamina": o["values"], "ragas": t}
            for s, o, t in zip(samples, ours, theirs, strict=True)
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))

    def show(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    print(
        f"{len(samples)} samples; judge: the model lamina serve serves; ragas {ragas.__version__}"
    )
    print(f"{'metric':<18} {'pairs':>5} {'lamina n/a':>10} {'ragas n/a':>9} {'lamina':>7} "
          f"{'ragas':>7} {'pearson':>8} {'spearman':>8} {'MAD':>6}")  # fmt: skip
    for metric, row in table.items():
        print(
            f"{metric:<18} {row['pairs']:>5} {row['lamina_unscored']:>10} "
            f"{row['ragas_unscored']:>9} {show(row['lamina_mean']):>7} "
            f"{show(row['ragas_mean']):>7} {show(row['pearson']):>8} "
            f"{show(row['spearman']):>8} {show(row['mad']):>6}"
        )
    print(
        f"side by side: ragas done after {ragas_s:.0f} s, lamina after {lamina_s:.0f} s; "
        f"details in {args.out}"
    )


if __name__ == "__main__":
    main()
