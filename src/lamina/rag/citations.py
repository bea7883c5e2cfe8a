"""Find the ``[n]`` markers in an answer and map each to a span of its source.

>>> [(c.sentence, c.numbers) for c in parse_claims("GGUF replaced GGML [2]. It is a file [1][3].")]
[('GGUF replaced GGML.', [2]), ('It is a file.', [1, 3])]
>>> [(c.sentence, c.numbers) for c in parse_claims("No marker here. But here. [4]")]
[('No marker here.', []), ('But here.', [4])]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lamina.rag.context import Passage
from lamina.rag.lexical import coverage, terms
from lamina.retrieval.sentences import split_sentences

__all__ = ["Claim", "Span", "best_span", "parse_claims", "strip_markers"]

_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")


@dataclass(frozen=True)
class Claim:
    """One sentence of an answer with the passage numbers it cites."""

    sentence: str
    numbers: list[int]


@dataclass(frozen=True)
class Span:
    """``text == document_text[start:end]``: the part of passage ``n`` that a claim rests on."""

    n: int
    start: int
    end: int
    text: str
    overlap: float


def strip_markers(text: str) -> str:
    """The text without its citation markers.

    >>> strip_markers("Paris [1].")
    'Paris.'
    """
    return re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub("", text)).strip()


def parse_claims(answer: str) -> list[Claim]:
    """Split ``answer`` into sentences and the citation numbers each carries.

    Markers after the full stop (``"... GGML. [2]"``) belong to the sentence before them.
    """
    claims: list[Claim] = []
    for s, e in split_sentences(answer):
        piece = answer[s:e]
        lead = re.match(r"(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+", piece)
        if lead and claims:  # "... GGML. [2] Next sentence": [2] closes the previous one
            last = claims[-1]
            claims[-1] = Claim(last.sentence, _unique([*last.numbers, *_numbers(lead[0])]))
            piece = piece[lead.end() :]
        sentence = strip_markers(piece)
        if sentence:
            claims.append(Claim(sentence, _unique(_numbers(piece))))
    return claims


def _numbers(text: str) -> list[int]:
    return [int(n) for m in _MARKER.finditer(text) for n in re.split(r"[,;]", m[1])]


def _unique(numbers: list[int]) -> list[int]:
    return list(dict.fromkeys(numbers))


def best_span(claim: str, passage: Passage, min_words: int = 3) -> Span:
    """The sentence of ``passage`` sharing most of ``claim``'s terms (the whole passage when
    no sentence shares any), in document offsets."""
    chunk = passage.hit.chunk.chunk
    text = passage.text
    claim_terms = terms(claim)
    best: tuple[float, int, int] = (0.0, 0, len(text))
    for s, e in split_sentences(text):
        if len(text[s:e].split()) < min_words:
            continue
        score = coverage(claim_terms, text[s:e])
        if score > best[0]:
            best = (score, s, e)
    overlap, s, e = best
    return Span(passage.n, chunk.start + s, chunk.start + e, text[s:e], overlap)


def cited_passages(numbers: Sequence[int], passages: Sequence[Passage]) -> list[Passage]:
    """The passages ``numbers`` refer to; numbers out of range are ignored."""
    by_n = {p.n: p for p in passages}
    return [by_n[n] for n in numbers if n in by_n]
