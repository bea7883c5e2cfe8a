"""Retrieval quality on your own corpus, without labels: find the passage a question came from.

1. Sample ``questions`` passages (chunks) of the index, with a fixed seed.
2. Make one question per passage:
   - ``model``: a chat model (the bundled one by default) writes a question the passage
     answers (prompt ``evals/synthetic_question`` of :mod:`lamina.prompts`, JSON-schema reply);
   - ``sentences``: a sentence of the passage itself is the query (known-item search: no
     model needed, but it favours lexical matching, since the words are the passage's own).
   ``auto`` uses the model when it loads and falls back to sentences; the run says which.
3. Search each question in every mode; the source passage is the one relevant result (with
   sentences, also any other chunk of the same document holding that exact sentence, as
   chunks overlap). nDCG@10, Recall@k and MRR@10 come from :mod:`lamina.evals.metrics`.

Questions from a passage share its words more than real users' questions do, so absolute
numbers run high; compare modes and settings on the same questions, not corpora.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from lamina.errors import InvalidRequestError, LaminaError
from lamina.evals.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from lamina.evals.run import EvalRun, RunMeta
from lamina.models.base import ChatModel
from lamina.prompts import render
from lamina.retrieval.index import Index
from lamina.retrieval.search import Mode
from lamina.retrieval.sentences import split_sentences
from lamina.retrieval.store.base import StoredChunk

__all__ = ["Generator", "evaluate_retrieval", "sentence_query"]

Generator = Literal["auto", "model", "sentences"]
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
MIN_WORDS = 12  # passages shorter than this (a lone heading, a caption) make poor questions
_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "maxLength": 200}},
    "required": ["question"],
    "additionalProperties": False,
}


def sentence_query(text: str, rng: random.Random, min_words: int = 6) -> str:
    """A random sentence of ``text`` with at least ``min_words`` words (else the text's start).

    >>> sentence_query("Short. This sentence has enough words in it.", random.Random(0))
    'This sentence has enough words in it.'
    """
    sentences = [" ".join(text[a:b].split()) for a, b in split_sentences(text)]
    long_enough = [s for s in sentences if len(s.split()) >= min_words]
    if long_enough:
        return rng.choice(long_enough)
    return " ".join(text.split()[:30])


def _model_question(model: ChatModel, passage: str) -> str | None:
    reply = model.chat(
        render("evals/synthetic_question", passage=" ".join(passage.split())),
        temperature=0.0,
        max_tokens=96,
        json_schema=_SCHEMA,
    )
    try:
        question = json.loads(reply.text)["question"].strip()
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # model-caused: this passage falls back to a sentence
    return question if len(question.split()) >= 3 else None


def _rank(ranking: Sequence[str], relevant: set[str]) -> int | None:
    return next((i for i, key in enumerate(ranking, start=1) if key in relevant), None)


def evaluate_retrieval(
    index: Index,
    *,
    questions: int = 50,
    generator: Generator = "auto",
    model: ChatModel | None = None,
    modes: Sequence[Mode] = MODES,
    k: int = 10,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> EvalRun:
    """Generate questions from ``index``'s passages and score every mode at finding them."""
    if questions < 1:
        raise InvalidRequestError(f"--questions {questions} must be 1 or more.")
    notes: list[str] = []
    snapshot = index.store.snapshot()
    eligible = [
        int(key)
        for key, text in zip(snapshot.keys, snapshot.chunk_texts, strict=True)
        if len(text.split()) >= MIN_WORDS
    ]
    if not eligible:
        raise InvalidRequestError(
            f"The index at {str(index.directory)!r} has no passage of {MIN_WORDS} words or "
            f"more to ask about. Ingest documents first: lamina ingest PATH --index DIR."
        )
    rng = random.Random(seed)
    chosen = sorted(rng.sample(eligible, min(questions, len(eligible))))
    if len(chosen) < questions:
        notes.append(f"asked {len(chosen)} questions: the index has {len(eligible)} passages")
    passages = index.store.get(chosen)

    used: str = generator
    if generator in ("auto", "model") and model is None:
        from lamina.models import get_model

        model = get_model("local")
    if generator == "auto":
        assert model is not None
        try:
            model.count_tokens("warm up")  # loads a local model: the failure we fall back from
            used = "model"
        except LaminaError as exc:
            used = "sentences"
            notes.append(f"question generator: sentence sampling (the model failed: {exc})")
    if used == "model":
        assert model is not None
        notes.append(f"questions written by {model.name} from each passage")
    else:
        notes.append("questions are sentences sampled from each passage (known-item search)")

    depth = max(k, 10)
    runs: dict[str, dict[str, dict[str, float]]] = {m: {} for m in modes}
    latencies: dict[str, list[float]] = {m: [] for m in modes}
    qrels: dict[str, dict[str, int]] = {}
    items: list[dict[str, Any]] = []
    total = len(passages) * (1 + len(modes))
    done = 0
    for n, passage in enumerate(passages, start=1):
        qid = str(n)
        question, how = None, "sentence"
        if used == "model":
            assert model is not None
            question, how = _model_question(model, passage.chunk.text), "model"
        if question is None:
            question = sentence_query(passage.chunk.text, rng)
            how = "sentence" if used == "sentences" else "sentence (model reply unusable)"
        relevant = {str(passage.key)}
        if how.startswith("sentence"):
            relevant |= _holding(index, passage, question)
        qrels[qid] = dict.fromkeys(relevant, 1)
        done += 1
        if progress:
            progress(done, total)
        item: dict[str, Any] = {
            "id": qid,
            "question": question,
            "generator": how,
            "source": passage.source,
            "chunk": passage.key,
            "passage": passage.chunk.text,
        }
        for mode in modes:
            began = time.perf_counter()
            hits = index.search(question, depth, mode=mode)
            latencies[mode].append((time.perf_counter() - began) * 1000)
            item[f"latency_ms_{mode}"] = latencies[mode][-1]
            ranking = [str(h.chunk.key) for h in hits]
            # Scores that strictly fall with rank, so ties cannot reorder the search's ranking.
            runs[mode][qid] = {key: float(depth - i) for i, key in enumerate(ranking)}
            rank = _rank(ranking, relevant)
            item[f"rank_{mode}"] = rank
            item[f"rr_{mode}"] = 1.0 / rank if rank else 0.0
            done += 1
            if progress:
                progress(done, total)
        items.append(item)

    summary: dict[str, Any] = {"questions": len(items), "generator": used, "k": k}
    for mode in modes:
        summary[mode] = {
            "ndcg@10": ndcg_at_k(runs[mode], qrels, 10),
            f"recall@{k}": recall_at_k(runs[mode], qrels, k),
            "mrr@10": mrr_at_k(runs[mode], qrels, 10),
            "latency_p50_ms": statistics.median(latencies[mode]),
        }
    meta = RunMeta(
        inputs={"index": str(index.directory)},
        settings={"seed": seed, "generator": used, "modes": list(modes), "depth": depth},
        notes=notes,
    )
    primary = f"rr_{'hybrid' if 'hybrid' in modes else modes[-1]}"
    return EvalRun(kind="retrieval", summary=summary, items=items, primary=primary, meta=meta)


def _holding(index: Index, passage: StoredChunk, sentence: str) -> set[str]:
    """Other chunks of the passage's document that contain ``sentence`` verbatim."""
    keys = index.store.matching({"document_id": passage.chunk.document_id})
    wanted = " ".join(sentence.split())
    return {
        str(c.key)
        for c in index.store.get(sorted(keys))
        if c.key != passage.key and wanted in " ".join(c.chunk.text.split())
    }
