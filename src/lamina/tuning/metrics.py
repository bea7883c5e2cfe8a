"""Task metrics for QA-style eval data: exact match and containment of a short reference.

Both compare normalised text (SQuAD's rule: lower case, no punctuation, no articles, single
spaces); containment needs whole words, so "art" is not found in "start".

>>> normalize("The  Red-Panda, Pixel!")
'red panda pixel'
>>> exact_match("Pixel.", ["pixel"]), contains("Its name is Pixel.", ["pixel"])
(True, True)
>>> contains("We start now", ["art"])
False
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

__all__ = ["contains", "exact_match", "normalize"]

_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(answer: str, references: Sequence[str]) -> bool:
    return normalize(answer) in {normalize(r) for r in references}


def contains(answer: str, references: Sequence[str]) -> bool:
    padded = f" {normalize(answer)} "
    return any(f" {normalize(r)} " in padded for r in references if normalize(r))
