"""Few-shot examples: load them, pick the ones that help, fit them in a budget, show them.

An example set is JSON lines, one ``{"input": ..., "output": ...}`` per line; a labelled set
may say ``{"text": ..., "label": ...}`` instead (the output is the label). Selection is by
similarity to the input (:class:`SimilaritySelector`, with any embedder: the bundled MiniLM by
default) or by label balance (:class:`BalancedSelector`: round robin over the labels, most
similar first within each when an embedder is given). :func:`fit` keeps the selected examples
that fit a token budget, in order, and says which it dropped. The same examples can be shown
as chat turns (:func:`as_turns`) or inline between XML-style delimiters (:func:`as_xml`).

>>> examples = [Example("great film", "positive"), Example("dull and long", "negative")]
>>> print(as_xml(examples[:1]))
<examples>
<example>
<input>great film</input>
<output>positive</output>
</example>
</examples>
>>> [m.role for m in as_turns(examples)]
['user', 'assistant', 'user', 'assistant']
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from lamina.errors import InvalidRequestError
from lamina.models.embeddings.base import TextEmbedder
from lamina.prompts.delimiters import escape
from lamina.types import Message

__all__ = [
    "BalancedSelector",
    "Example",
    "Selector",
    "SimilaritySelector",
    "as_turns",
    "as_xml",
    "fit",
    "load_examples",
]


@dataclass(frozen=True)
class Example:
    """One demonstration: an input and the output wanted for it (for a labelled example,
    the label)."""

    input: str
    output: str

    @property
    def label(self) -> str:
        return self.output


def load_examples(path: str | os.PathLike[str], *, limit: int = 100_000) -> list[Example]:
    """Examples from JSON lines; a bad line is an error naming the file, the line and the fix.

    Blank lines are skipped. ``limit`` bounds how many are read (a few hundred is plenty).
    """
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidRequestError(f"No examples file at {str(file)!r}.") from None
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{str(file)!r} is not UTF-8 text (JSON lines).") from None
    examples: list[Example] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(examples) >= limit:
            raise InvalidRequestError(
                f"{str(file)!r} has more than {limit} examples; use a smaller set."
            )
        examples.append(_example(line, f"{file.name}:{number}"))
    if not examples:
        raise InvalidRequestError(f"{str(file)!r} holds no examples.")
    return examples


def _example(line: str, where: str) -> Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{where}: not JSON ({exc.msg}).") from None
    if not isinstance(record, dict):
        raise InvalidRequestError(f"{where}: expected an object, got {type(record).__name__}.")
    text = record.get("input", record.get("text"))
    output = record.get("output", record.get("label"))
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError(
            f'{where}: needs a non-empty "input" (or "text") string, e.g. '
            f'{{"input": "I loved it", "output": "positive"}}.'
        )
    if isinstance(output, int | float) and not isinstance(output, bool):
        output = str(output)
    if not isinstance(output, str) or not output.strip():
        raise InvalidRequestError(f'{where}: needs a non-empty "output" (or "label") string.')
    return Example(text, output)


class Selector(Protocol):
    """Picks up to ``k`` examples for ``query``, most useful first."""

    def select(self, query: str, examples: Sequence[Example], k: int) -> list[Example]: ...


class _Similarity:
    """Cosine similarity of the query to each example input; example vectors are cached."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    def scores(self, query: str, examples: Sequence[Example]) -> np.ndarray:
        missing = [e.input for e in examples if e.input not in self._vectors]
        if missing:
            unique = list(dict.fromkeys(missing))
            for text, vector in zip(unique, self.embedder.embed_documents(unique), strict=True):
                self._vectors[text] = np.asarray(vector, dtype=np.float32)
        if not examples:
            return np.zeros(0, dtype=np.float32)
        matrix = np.stack([self._vectors[e.input] for e in examples])
        return matrix @ np.asarray(self.embedder.embed_query(query), dtype=np.float32)


class SimilaritySelector:
    """The ``k`` examples whose inputs are most similar to the query (ties: file order)."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self._similarity = _Similarity(embedder)

    def select(self, query: str, examples: Sequence[Example], k: int) -> list[Example]:
        scores = self._similarity.scores(query, examples)
        order = sorted(range(len(examples)), key=lambda i: (-float(scores[i]), i))
        return [examples[i] for i in order[:k]]


class BalancedSelector:
    """Round robin over the labels (outputs), so each label is shown as often as the others.

    Within a label the most similar examples come first when an embedder is given, else the
    file order. Labels take turns in order of first appearance.

    >>> ex = [Example(t, l) for t, l in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "z")]]
    >>> [e.input for e in BalancedSelector().select("q", ex, 4)]
    ['a', 'c', 'd', 'b']
    """

    def __init__(self, embedder: TextEmbedder | None = None) -> None:
        self._similarity = _Similarity(embedder) if embedder is not None else None

    def select(self, query: str, examples: Sequence[Example], k: int) -> list[Example]:
        ranked = list(examples)
        if self._similarity is not None:
            scores = self._similarity.scores(query, examples)
            order = sorted(range(len(examples)), key=lambda i: (-float(scores[i]), i))
            ranked = [examples[i] for i in order]
        by_label: dict[str, list[Example]] = {}
        for example in ranked:
            by_label.setdefault(example.output, []).append(example)
        chosen: list[Example] = []
        while len(chosen) < k and any(by_label.values()):
            for queue in by_label.values():
                if queue and len(chosen) < k:
                    chosen.append(queue.pop(0))
        return chosen


def fit(
    examples: Sequence[Example],
    count: Callable[[Sequence[Example]], int],
    budget: int,
) -> tuple[list[Example], list[Example]]:
    """The examples that fit: ``count(kept)`` (tokens of the prompt built with them) stays
    within ``budget``; an example that does not fit is dropped and the next one is tried.

    >>> ex = [Example("a b c", "x"), Example("d " * 20, "y"), Example("e", "z")]
    >>> kept, dropped = fit(ex, lambda es: sum(len(e.input.split()) + 1 for e in es), 8)
    >>> [e.output for e in kept], [e.output for e in dropped]
    (['x', 'z'], ['y'])
    """
    kept: list[Example] = []
    dropped: list[Example] = []
    for example in examples:
        if count([*kept, example]) <= budget:
            kept.append(example)
        else:
            dropped.append(example)
    return kept, dropped


def as_turns(
    examples: Iterable[Example], render: Callable[[Example], tuple[str, str]] | None = None
) -> list[Message]:
    """Each example as a user turn and the assistant's reply; ``render`` may reshape both
    (the classifier shows the reply as the JSON it wants back)."""
    messages: list[Message] = []
    for example in examples:
        user, reply = render(example) if render else (example.input, example.output)
        messages.extend([Message.user(user), Message.assistant(reply)])
    return messages


def as_xml(examples: Iterable[Example], tag: str = "example") -> str:
    """The examples inline, each ``<example><input>…</input><output>…</output></example>``;
    text that would close a delimiter is escaped."""
    blocks = [
        f"<{tag}>\n<input>{escape(e.input)}</input>\n<output>{escape(e.output)}</output>\n</{tag}>"
        for e in examples
    ]
    return "<examples>\n" + "\n".join(blocks) + "\n</examples>" if blocks else ""
