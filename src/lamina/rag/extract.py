"""Score the sentences of the packed passages as answers to a query.

Small models paraphrase badly, so the default answer is a sentence of the sources, quoted: the
one that best covers the query. A sentence's score mixes three signals:

- ``lexical``: IDF-weighted share of the query's terms in the sentence, plus (weighted lower)
  in its context: the passage title, headings and the sentence before it, so "It replaced
  GGML" still matches a question about GGUF;
- ``dense``: cosine similarity of the query and sentence embeddings;
- ``retrieval``: the fused search score of the passage it is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lamina.models.embeddings.base import TextEmbedder
from lamina.rag.context import Passage
from lamina.rag.lexical import coverage, idf, terms
from lamina.retrieval.sentences import split_sentences

__all__ = ["Candidate", "Weights", "candidates"]


@dataclass(frozen=True)
class Weights:
    lexical: float = 0.5
    context: float = 0.15
    dense: float = 0.35
    retrieval: float = 0.1


@dataclass
class Candidate:
    """A sentence of passage ``n``: ``text == document_text[start:end]``."""

    n: int
    start: int
    end: int
    text: str
    score: float = 0.0
    signals: dict[str, float] = field(default_factory=dict)


def _skip_heading(text: str, s: int, e: int) -> int:
    """Move ``s`` past leading heading lines, as PDF text has them: short, unpunctuated, and
    followed by a line that starts a sentence (a wrapped line goes on in lower case).

    >>> text = "QLoRA\\nQLoRA trains adapters."
    >>> text[_skip_heading(text, 0, len(text)):]
    'QLoRA trains adapters.'
    """
    while (newline := text.find("\n", s, e)) != -1:
        line = text[s:newline].strip()
        following = text[newline + 1 : e].lstrip()[:1]
        if len(line.split()) > 8 or line[-1:] in ".!?:;," or not following.isupper():
            break
        s = newline + 1
    return s


def _sentences(passage: Passage, min_words: int) -> list[tuple[int, int]]:
    text = passage.text
    spans = [(_skip_heading(text, s, e), e) for s, e in split_sentences(text)]
    return [(s, e) for s, e in spans if len(text[s:e].split()) >= min_words]


def candidates(
    query: str,
    passages: Sequence[Passage],
    embedder: TextEmbedder | None = None,
    *,
    weights: Weights = Weights(),
    min_words: int = 4,
) -> list[Candidate]:
    """Every sentence of ``passages`` scored against ``query``, best first."""
    found: list[tuple[Passage, int, int, str]] = []
    for passage in passages:
        for s, e in _sentences(passage, min_words):
            found.append((passage, s, e, passage.text[s:e]))
    if not found:
        return []
    weights_idf = idf([terms(t) for *_, t in found])
    query_terms = terms(query)
    dense = np.zeros(len(found), dtype=np.float32)
    if embedder is not None and weights.dense:
        vectors = embedder.embed_documents([" ".join(t.split()) for *_, t in found])
        dense = vectors @ embedder.embed_query(query)
    out = []
    previous: tuple[Passage | None, str] = (None, "")
    for i, (passage, s, e, text) in enumerate(found):
        before = previous[1] if previous[0] is passage else ""
        context = f"{passage.title} {before}"
        lexical = coverage(query_terms, text, weights_idf)
        around = coverage(query_terms, f"{context} {text}", weights_idf)
        signals = {
            "lexical": lexical,
            "context": around,
            "dense": float(dense[i]),
            "retrieval": float(passage.hit.score),
        }
        score = (
            weights.lexical * lexical
            + weights.context * around
            + weights.dense * signals["dense"]
            + weights.retrieval * signals["retrieval"]
        )
        chunk = passage.hit.chunk.chunk
        out.append(Candidate(passage.n, chunk.start + s, chunk.start + e, text, score, signals))
        previous = (passage, text)
    out.sort(key=lambda c: c.score, reverse=True)
    return out
