"""Generation metrics of predictions against references: sacrebleu and rouge-score, as they are.

Inputs are JSON lines ``{"id": ..., "text": ...}``: one prediction per id, one or more
references per id (repeat the id, or give ``"text": [..]``).

Corpus numbers are the libraries' own, computed the way their documentation says:

- ``bleu``, ``chrf``: ``sacrebleu.corpus_bleu`` / ``corpus_chrf`` with their defaults
  (13a tokenization, exponential smoothing; chrF character 6-grams, beta 2), on sacrebleu's
  0–100 scale. With a varying number of references per id the missing ones are ``None``, as
  sacrebleu allows. The exact configuration is in ``meta.settings`` (sacrebleu signatures).
- ``rouge1``, ``rouge2``, ``rougeL``: ``rouge_score.rouge_scorer.RougeScorer(use_stemmer=True)``;
  an item's score is ``score_multi`` (the best reference by F-measure), the corpus score the
  mean F-measure over items, 0–1.
- ``exact_match``, ``f1``: the SQuAD v1.1 definitions (lowercase, no punctuation or articles;
  token-bag F1), best over the references, mean over items, 0–1.

>>> run = evaluate_texts({"a": "the cat sat"}, {"a": ["The cat sat.", "a cat"]})
>>> run.summary["exact_match"], round(run.summary["chrf"], 2), run.summary["rouge1"]  # chrF: case
(1.0, 73.87, 1.0)
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lamina.errors import InvalidRequestError, MissingDependencyError
from lamina.evals.run import EvalRun, RunMeta

__all__ = ["evaluate_files", "evaluate_texts", "exact_match", "load_texts", "squad_f1"]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_PUNCTUATION = frozenset(string.punctuation)


def _normal(text: str) -> str:
    """SQuAD v1.1 answer normalisation.

    >>> _normal("The  Cat, sat!")
    'cat sat'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(_normal(prediction) == _normal(reference))


def squad_f1(prediction: str, reference: str) -> float:
    """SQuAD v1.1 token F1.

    >>> round(squad_f1("the cat sat on the mat", "a cat on a mat"), 3)
    0.857
    """
    p, r = _normal(prediction).split(), _normal(reference).split()
    common = sum((Counter(p) & Counter(r)).values())
    if not common:
        return float(p == r)  # both empty counts as a match, as in the SQuAD script
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def load_texts(path: Path, *, many: bool) -> dict[str, list[str]]:
    """``id -> texts`` from JSON lines; ``many=False`` refuses a repeated id (predictions)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidRequestError(f"No file at {str(path)!r}.") from None
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{str(path)!r} is not UTF-8 text (JSON lines).") from None
    texts: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    shape = 'Each line must be {"id": "...", "text": "..."}'
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{where} is not valid JSON ({exc.msg}). {shape}.") from None
        if not isinstance(record, dict) or "id" not in record or "text" not in record:
            raise InvalidRequestError(f"{where} lacks an 'id' or a 'text'. {shape}.")
        key, text = record["id"], record["text"]
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise InvalidRequestError(f"{where}: 'id' must be a string or an integer, not {key!r}.")
        values = text if isinstance(text, list) and many else [text]
        if not all(isinstance(v, str) for v in values):
            kind = "a string or a list of strings" if many else "a string"
            raise InvalidRequestError(f"{where}: 'text' must be {kind}, not {text!r}.")
        key = str(key)
        if not many and key in texts:
            raise InvalidRequestError(
                f"{where} repeats id {key!r} (first on line {first_line[key]}): give one "
                f"prediction per id."
            )
        first_line.setdefault(key, number)
        texts.setdefault(key, []).extend(values)
    if not texts:
        raise InvalidRequestError(f"{str(path)!r} holds no records. {shape}.")
    return texts


def _check_ids(pred: Mapping[str, Any], ref: Mapping[str, Any], names: tuple[str, str]) -> None:
    problems = []
    for name, mine, other in ((names[0], pred, ref), (names[1], ref, pred)):
        alone = [k for k in mine if k not in other]
        if alone:
            shown = ", ".join(repr(k) for k in alone[:5]) + (" ..." if len(alone) > 5 else "")
            problems.append(f"{len(alone)} id(s) only in {name}: {shown}")
    if problems:
        raise InvalidRequestError(
            "; ".join(problems) + ". Every prediction needs at least one reference with the "
            "same id, and every reference a prediction."
        )


def _libraries() -> tuple[Any, Any]:
    try:
        import sacrebleu
        from rouge_score import rouge_scorer
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "sacrebleu", "eval") from None
    return sacrebleu, rouge_scorer


def evaluate_texts(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    progress: Callable[[int, int], None] | None = None,
    names: tuple[str, str] = ("the predictions", "the references"),
) -> EvalRun:
    """Score ``predictions[id]`` against ``references[id]`` (same ids in both)."""
    _check_ids(predictions, references, names)
    sacrebleu, rouge_scorer = _libraries()
    ids = list(predictions)
    hyps = [predictions[i] for i in ids]
    refs = [list(references[i]) for i in ids]
    depth = max(len(r) for r in refs)
    # sacrebleu wants reference streams: stream j holds every id's j-th reference (or None).
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(depth)]
    bleu_metric = sacrebleu.metrics.BLEU()
    chrf_metric = sacrebleu.metrics.CHRF()
    bleu = bleu_metric.corpus_score(hyps, streams)
    chrf = chrf_metric.corpus_score(hyps, streams)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    items: list[dict[str, Any]] = []
    for n, (key, hyp, ref) in enumerate(zip(ids, hyps, refs, strict=True), start=1):
        rouge = scorer.score_multi(ref, hyp)
        items.append(
            {
                "id": key,
                "prediction": hyp,
                "references": ref,
                "exact_match": max(exact_match(hyp, r) for r in ref),
                "f1": max(squad_f1(hyp, r) for r in ref),
                "bleu": float(sacrebleu.sentence_bleu(hyp, ref).score),
                "chrf": float(sacrebleu.sentence_chrf(hyp, ref).score),
                **{t: float(rouge[t].fmeasure) for t in ROUGE_TYPES},
            }
        )
        if progress:
            progress(n, len(ids))
    count = len(items)
    summary: dict[str, Any] = {
        "bleu": float(bleu.score),
        "chrf": float(chrf.score),
        **{t: sum(i[t] for i in items) / count for t in ROUGE_TYPES},
        "exact_match": sum(i["exact_match"] for i in items) / count,
        "f1": sum(i["f1"] for i in items) / count,
        "n": count,
        "references": sum(len(r) for r in refs),
    }
    settings = {
        "bleu": str(bleu_metric.get_signature()),
        "chrf": str(chrf_metric.get_signature()),
        "rouge": f"rouge-score, use_stemmer=True, types={','.join(ROUGE_TYPES)}, best reference "
        f"by F-measure, mean over items",
        "exact_match/f1": "SQuAD v1.1 normalisation, best reference, mean over items",
    }
    return EvalRun(
        kind="gen", summary=summary, items=items, primary="chrf", meta=RunMeta(settings=settings)
    )


def evaluate_files(
    pred: Path, ref: Path, *, progress: Callable[[int, int], None] | None = None
) -> EvalRun:
    """:func:`evaluate_texts` on two JSON-lines files."""
    predictions = {k: v[0] for k, v in load_texts(pred, many=False).items()}
    run = evaluate_texts(
        predictions, load_texts(ref, many=True), progress=progress, names=(str(pred), str(ref))
    )
    run.meta.inputs = {"pred": str(pred), "ref": str(ref)}
    return run
