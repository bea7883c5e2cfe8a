r"""Classification and summarisation quality of :mod:`lamina.apps` with the bundled models.

No PyPI package this project installs ships a small labelled text set (nltk's corpora and the
``datasets`` hub sets are downloads, which the machines here cannot make), so the sets are
written from the sample corpus and are in ``samples/apps/``:

- ``topics.jsonl`` (135 items, 7 labels): every sentence of at least six words of the seven
  documents of ``samples/corpus`` labelled with its document's topic (94), and the questions
  of ``samples/qa.jsonl`` and ``samples/qa_dev.jsonl`` that name a source document, labelled
  the same way (41). The labels are where the text comes from, not anyone's judgement;
  ``--write-set`` rebuilds the file from the corpus.
- ``summaries.jsonl``: one reference summary (three sentences, written by hand for this
  benchmark) per corpus document.

Classification: zero-shot (the labels alone), few-shot (the 4 most similar examples as chat
turns) and embedding kNN (the 4 nearest examples by MiniLM, no LLM), scored with
:func:`lamina.apps.classify.report` (accuracy, macro F1). Few-shot and kNN take their
examples from the other half of the set (two folds: items alternate between them), so no
item is ever its own example. The LLM methods run calibrated (see
:mod:`lamina.apps.classify`); the uncalibrated label is read from the same result, so each
gets two rows from one set of calls. ``--limit N`` has the LLM methods classify N items
(balanced over the labels; kNN always takes all). Summaries:
``summarize(length="short", style="prose")`` of each document against its reference,
ROUGE-1/2/L F (``rouge-score`` with the stemmer, as ``lamina eval gen`` computes it), beside
the lead-3 baseline (the first three sentences).

    python benchmarks/apps.py [--limit N] [--skip-summaries] [--model local] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from lamina.apps.classify import Classification, Classifier, report
from lamina.apps.inputs import load_inputs
from lamina.apps.summarize import summarize
from lamina.prompts.fewshot import Example
from lamina.retrieval.sentences import split_sentences

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "samples" / "corpus"
TOPICS = ROOT / "samples" / "apps" / "topics.jsonl"
SUMMARIES = ROOT / "samples" / "apps" / "summaries.jsonl"
#: Each corpus document's topic: the label its sentences and questions carry.
LABELS = {
    "rag.md": "retrieval",
    "tokenization.md": "tokenization",
    "quantization.html": "quantization",
    "lora.pdf": "fine-tuning",
    "evaluation.html": "evaluation",
    "prompt_engineering.md": "prompting",
    "lamina.md": "lamina",
}
K = 4


def _sentences(text: str) -> list[str]:
    out = []
    for start, end in split_sentences(text):
        lines = [line.strip() for line in text[start:end].splitlines() if line.strip()]
        # A heading runs into the sentence after it: a short first line without a full stop
        # (a PDF's wrapped lines are long, and stay).
        while (
            len(lines) > 1
            and len(lines[0]) < 60
            and lines[0][-1] not in ".:;,"
            and lines[1][0].isupper()
        ):
            lines.pop(0)
        sentence = " ".join(" ".join(lines).lstrip("# ").split())
        if len(sentence.split()) >= 6:
            out.append(sentence)
    return out


def build_topics() -> list[dict[str, str]]:
    """The topic set from the corpus and the QA files (see the module docstring)."""
    items = []
    for name, label in LABELS.items():
        (document,) = load_inputs([CORPUS / name])
        items += [{"text": s, "label": label, "from": name} for s in _sentences(document.text)]
    for qa in ("qa.jsonl", "qa_dev.jsonl"):
        for line in (ROOT / "samples" / qa).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("source") in LABELS:
                items.append({"text": row["question"], "label": LABELS[row["source"]], "from": qa})
    return items


def load_topics() -> list[dict[str, str]]:
    return [json.loads(line) for line in TOPICS.read_text(encoding="utf-8").splitlines()]


def balanced(items: Sequence[dict[str, str]], n: int) -> list[dict[str, str]]:
    """The first ``n`` items taking the labels in turn (all of them when ``n`` is 0).

    >>> [i["label"] for i in balanced([{"label": "a"}, {"label": "a"}, {"label": "b"}], 2)]
    ['a', 'b']
    """
    if not n or n >= len(items):
        return list(items)
    queues: dict[str, list[dict[str, str]]] = {}
    for item in items:
        queues.setdefault(item["label"], []).append(item)
    out: list[dict[str, str]] = []
    while len(out) < n:
        for queue in queues.values():
            if queue and len(out) < n:
                out.append(queue.pop(0))
    return out


def uncalibrated(result: Classification, labels: Sequence[str]) -> str:
    """The label before calibration: scores times the prior (floored as the classifier does).

    Within the 1% floor, ``scores * prior`` is proportional to the model's own scores.
    """
    if not result.calibrated:
        return result.label
    raw = {n: result.scores[n] * max(result.prior[n], 0.01) for n in labels}
    return max(labels, key=lambda n: raw[n])


def classify_all(
    items: Sequence[dict[str, str]], method: str, model: Any, embedder: Any, limit: int = 0
) -> list[dict[str, Any]]:
    """Two folds; each fold's items (``limit`` in all, balanced) take the other's examples.

    One row per method, and for the LLM methods a second, uncalibrated, row from the same
    calls (the calibrated tokens and time include the prior's calls).
    """
    labels = list(dict.fromkeys(LABELS.values()))
    folds = [list(items[0::2]), list(items[1::2])]
    tests = [balanced(folds[0], limit // 2), balanced(folds[1], limit - limit // 2)]
    gold, predicted, raw_predicted, tokens, confidences = [], [], [], 0, []
    started = time.perf_counter()
    for fold, other in ((tests[0], folds[1]), (tests[1], folds[0])):
        examples = [Example(input=i["text"], output=i["label"]) for i in other]
        classifier = Classifier(
            labels,
            model=None if method == "knn" else model,
            examples=[] if method == "zero-shot" else examples,
            method=method,  # type: ignore[arg-type]
            k=K,
            embedder=embedder,
            calibrate=True,  # the uncalibrated label is read from the same result
        )
        for item in fold:
            result = classifier.classify(item["text"])
            gold.append(item["label"])
            predicted.append(result.label)
            raw_predicted.append(uncalibrated(result, labels))
            tokens += result.usage.total_tokens
            if result.confidence is not None:
                confidences.append(result.confidence)
    seconds = time.perf_counter() - started
    rows = []
    named = [(method, predicted)]
    if method != "knn":
        named = [(f"{method}, uncalibrated", raw_predicted), (f"{method}, calibrated", predicted)]
    for name, guesses in named:
        scores = report(gold, guesses, labels)
        rows.append(
            {
                "method": name,
                "n": scores.n,
                "accuracy": scores.accuracy,
                "macro_f1": scores.macro_f1,
                "confidence": sum(confidences) / len(confidences) if confidences else None,
                "tokens_per_item": tokens / scores.n,
                "ms_per_item": 1000 * seconds / scores.n,
                "per_label_f1": {k: round(v.f1, 3) for k, v in scores.per_label.items()},
            }
        )
    return rows


def _plain(text: str) -> str:
    return " ".join(re.sub(r"\[\d+\]", "", text).split())


def summaries(model: Any) -> list[dict[str, Any]]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rows = []
    for line in SUMMARIES.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        path = CORPUS / case["source"]
        (document,) = load_inputs([path])
        started = time.perf_counter()
        summary = summarize(document, model=model, length="short", style="prose", trace=False)
        seconds = time.perf_counter() - started
        body = document.text.split("\n", 1)[-1]  # the title is not a sentence of the lead
        lead = " ".join(" ".join(body[a:b].split()) for a, b in split_sentences(body)[:3])
        row: dict[str, Any] = {"source": case["source"], "seconds": seconds}
        for system, text in (("lamina", _plain(summary.text)), ("lead-3", lead)):
            scores = scorer.score(case["reference"], text)
            row[system] = {k: v.fmeasure for k, v in scores.items()}
        row["summary"] = _plain(summary.text)
        rows.append(row)
    return rows


def _versions() -> str:
    names = ("lamina", "llama_cpp_python", "onnxruntime", "rouge-score")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="A model spec (default: the bundled).")
    parser.add_argument(
        "--limit", type=int, default=0, help="The LLM methods classify N items (balanced)."
    )
    parser.add_argument("--methods", default="zero-shot,few-shot,knn")
    parser.add_argument("--skip-summaries", action="store_true")
    parser.add_argument("--write-set", action="store_true", help="Rebuild topics.jsonl.")
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args(argv)
    if args.write_set:
        topics = build_topics()
        TOPICS.parent.mkdir(parents=True, exist_ok=True)
        TOPICS.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topics))
        print(f"wrote {len(topics)} items to {TOPICS.relative_to(ROOT)}")
        return

    from lamina.models import get_model
    from lamina.models.embeddings import get_embedder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = get_model(args.model)
    embedder = get_embedder("minilm")
    items = load_topics()
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"Python {platform.python_version()}, {_versions()}; model {model.name}"
    )
    results: dict[str, Any] = {"classification": [], "summaries": []}
    print(f"\nTopic classification: {len(items)} items, {len(set(LABELS.values()))} labels")
    print("| method | n | accuracy | macro F1 | mean confidence | tokens/item | ms/item |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for method in [m for m in args.methods.split(",") if m]:
        limit = 0 if method == "knn" else args.limit
        for row in classify_all(items, method, model, embedder, limit):
            results["classification"].append(row)
            confidence = "-" if row["confidence"] is None else f"{row['confidence']:.2f}"
            print(
                f"| {row['method']} | {row['n']} | {row['accuracy']:.3f} | "
                f"{row['macro_f1']:.3f} | {confidence} | {row['tokens_per_item']:.0f} | "
                f"{row['ms_per_item']:.0f} |",
                flush=True,
            )
    if not args.skip_summaries:
        rows = summaries(model)
        results["summaries"] = rows
        print(f"\nSummaries: {len(rows)} documents, ROUGE F against one reference each")
        print("| system | ROUGE-1 | ROUGE-2 | ROUGE-L | s/document |")
        print("|---|---:|---:|---:|---:|")
        for system in ("lamina", "lead-3"):
            means = {
                k: sum(r[system][k] for r in rows) / len(rows)
                for k in ("rouge1", "rouge2", "rougeL")
            }
            seconds = sum(r["seconds"] for r in rows) / len(rows) if system == "lamina" else 0
            print(
                f"| {system} | {means['rouge1']:.3f} | {means['rouge2']:.3f} | "
                f"{means['rougeL']:.3f} | {seconds:.1f} |"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
