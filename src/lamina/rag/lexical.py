"""The word-level signals the answer selector and the verifier share.

Terms are lower-cased word tokens without stop words, crudely stemmed, so "passages"
matches "passage" and "replaced" matches "replace". A minbpe-sized core: no model, no
corpus statistics beyond what the caller passes in.

>>> terms("Which older formats did GGUF replace?")
['older', 'format', 'gguf', 'replac']
>>> round(coverage(["gguf", "replace"], "It replaced GGUF."), 2)
0.5
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["STOPWORDS", "coverage", "idf", "terms"]

_WORD = re.compile(r"[\w#][\w#.\-]*[\w#]|[\w#]", re.UNICODE)

_STOP_TEXT = """a about above after again against all also am an and any are as at be because
    been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my no nor not now of off on once only or other our out over own same she should
    so some such than that the their them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
    tell give describe explain called name named mean means stand stands usually often typically
    much many kind type say said according document documents"""
STOPWORDS = frozenset(_STOP_TEXT.split())


def _normal(word: str) -> str:
    """A crude suffix stemmer, enough to match "replaced" with "replace"."""
    word = word.strip(".-")
    if not word.isalpha() or len(word) <= 4:
        return word
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def terms(text: str) -> list[str]:
    """Content terms of ``text``, in order, duplicates kept."""
    out = []
    for raw in _WORD.findall(text.lower()):
        word = _normal(raw)
        if word and word not in STOPWORDS:
            out.append(word)
    return out


def idf(documents: Sequence[Iterable[str]]) -> dict[str, float]:
    """Smoothed inverse document frequency of each term over ``documents`` (term lists)."""
    df: dict[str, int] = {}
    for doc in documents:
        for term in set(doc):
            df[term] = df.get(term, 0) + 1
    n = len(documents)
    return {t: math.log(1 + (n + 1) / (c + 0.5)) for t, c in df.items()}


def coverage(
    query_terms: Sequence[str], text: str, weights: Mapping[str, float] | None = None
) -> float:
    """Weighted share of ``query_terms`` that occur in ``text`` (0..1).

    A term unseen in ``weights`` gets the largest weight: it is rare by definition.
    """
    unique = list(dict.fromkeys(query_terms))
    if not unique:
        return 0.0
    present = set(terms(text))
    top = max(weights.values(), default=1.0) if weights else 1.0
    w = {t: (weights.get(t, top) if weights else 1.0) for t in unique}
    total = sum(w.values())
    return sum(w[t] for t in unique if t in present) / total if total else 0.0
