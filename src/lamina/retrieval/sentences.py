"""A small rule-based sentence splitter that returns spans, so offsets stay exact.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (plus closing quotes or brackets) followed by
white space and anything but a lower-case letter; at CJK and Devanagari full stops; and
before a new list item on its own line. Common abbreviations (``e.g.``, ``Dr.``),
single-letter initials and dotted acronyms (``U.S.``) do not end a sentence. Linear time.

    >>> text = "Dr. Smith met J. Doe. They left, e.g. at noon! Done"
    >>> [text[s:e] for s, e in split_sentences(text)]
    ['Dr. Smith met J. Doe.', 'They left, e.g. at noon!', 'Done']
"""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

_CLOSERS = "\"'\u201d\u2019\u00bb\u300d\u300f)\\]"  # quotes and brackets after a stop
_CANDIDATE = re.compile(
    f"[.!?\u2026]+[{_CLOSERS}]*(?=\\s)"  # . ! ? ... then white space
    f"|[\u3002\uff01\uff1f\u0964]+[{_CLOSERS}]*"  # CJK and Devanagari full stops
    r"|\n(?=[ \t]*(?:[-*+\u2022]|\d{1,3}[.)])[ \t])"  # a new list item
)
_NEXT_START = re.compile(r"\s*(\S)")
_ABBREVIATIONS = frozenset(
    " ".join(
        (
            "mr mrs ms dr prof sr jr st mt vs e.g i.e cf al fig figs eq eqs no nos vol vols pp p",
            "ch sec approx dept est inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov",
            "dec mon tue wed thu fri sat sun",
        )
    ).split(" ")
)
_OPENERS = "\"'\u201c\u2018\u00ab([\u00bf\u00a1"


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` spans of the sentences in ``text[start:end]``, whitespace trimmed."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    current = start
    for match in _CANDIDATE.finditer(text, start, end):
        mark = match.group()
        if mark == "\n":
            stop, resume = match.start(), match.end()
        else:
            stop = resume = match.end()
            if mark[0] in ".!?\u2026":
                following = _NEXT_START.match(text, stop, end)
                if following is None:
                    continue  # trailing punctuation: the final span takes it
                if following.group(1).islower():
                    continue  # "e.g. the", "approx. ten": a lower-case word goes on
                if (
                    mark.startswith(".")
                    and not mark.startswith("..")
                    and _abbreviation(text, current, match.start())
                ):
                    continue
        _append(text, current, stop, spans)
        current = resume
    _append(text, current, end, spans)
    return spans


def _abbreviation(text: str, floor: int, dot: int) -> bool:
    """Whether the word ending at ``text[dot]`` (a period) is an abbreviation or initial."""
    begin = dot
    while begin > floor and not text[begin - 1].isspace() and dot - begin < 24:
        begin -= 1
    word = text[begin:dot].lstrip(_OPENERS)
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. Doe"
    if "." in word and all(part.isalpha() and len(part) <= 2 for part in word.split(".")):
        return True  # "e.g", "U.S", "i.e"
    return word.lower() in _ABBREVIATIONS


def _append(text: str, begin: int, stop: int, spans: list[tuple[int, int]]) -> None:
    while begin < stop and text[begin].isspace():
        begin += 1
    while stop > begin and text[stop - 1].isspace():
        stop -= 1
    if begin < stop:
        spans.append((begin, stop))
