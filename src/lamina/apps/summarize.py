"""Summaries of any size: map over sections, reduce the points, keep every point's source.

    >>> from lamina.testing import ScriptedModel
    >>> model = ScriptedModel(['{"points": ["LoRA trains two small matrices."]}'])
    >>> summary = summarize("# LoRA\\n\\nLoRA trains two small matrices per layer.", model=model)
    >>> print(summary.text)
    - LoRA trains two small matrices. [1]
    >>> summary.points[0].sections[0].heading
    'LoRA'

1. **Split**: each document is cut into sections that fit the model's window (the retrieval
   chunker, sized in the model's own tokens: headings and pages are never crossed).
2. **Map**: the model writes up to a few points per section, as JSON (a grammar on local
   models), so every point is born attached to its section.
3. **Reduce**: while there are more points than the length asks for, the model combines
   batches of them, each new point naming the numbers of the points it draws on; its sections
   are theirs. After three rounds the first points are kept.

The result's ``points`` carry their sections (source, heading path, page, character span), and
``text`` marks each point with the numbers of its sections, listed in ``sections``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from lamina.apps.inputs import load_inputs, text_document
from lamina.errors import InvalidRequestError
from lamina.models.base import ChatModel
from lamina.prompts import builtin_prompt
from lamina.prompts.chain import accumulate, add_usage
from lamina.prompts.templates import as_options
from lamina.prompts.tracing import Tracer
from lamina.retrieval import Chunk, Chunker, FunctionCounter, LoadedDocument
from lamina.types import Usage

__all__ = ["Length", "Section", "Summary", "SummaryPoint", "summarize"]

Length = Literal["short", "medium", "long"]
Style = Literal["bullets", "prose"]

#: Points in the final summary for each length.
POINTS: dict[str, int] = {"short": 3, "medium": 6, "long": 10}
MAX_POINT_CHARS = 240
MAX_ROUNDS = 3
#: Upper bound on a section's tokens: a 135M model reads long inputs poorly, and the map calls
#: are the cost (each section is one call).
SECTION_TOKENS = 768


class Section(BaseModel):
    """Where a point came from: ``source[start:end]`` of the loaded text."""

    n: int
    source: str
    heading: str = ""
    page: int | None = None
    start: int
    end: int


class SummaryPoint(BaseModel):
    text: str
    sections: list[Section]


class Summary(BaseModel):
    text: str
    points: list[SummaryPoint]
    #: Every section a point links to, numbered as in ``text``.
    sections: list[Section] = Field(default_factory=list)
    #: Sections read (map calls) and reduce rounds.
    read: int = 0
    rounds: int = 0
    usage: Usage = Field(default_factory=Usage)
    trace_id: str | None = None


@dataclass
class _Point:
    text: str
    origins: list[int]  # indices into the chunks


def _points_schema(most: int, items: dict[str, Any] | None = None) -> dict[str, Any]:
    item = items or {"type": "string", "minLength": 8, "maxLength": MAX_POINT_CHARS}
    return {
        "type": "object",
        "properties": {"points": {"type": "array", "items": item, "minItems": 1, "maxItems": most}},
        "required": ["points"],
    }


def summarize(
    source: str | os.PathLike[str] | LoadedDocument | Sequence[LoadedDocument],
    *,
    model: ChatModel | None = None,
    length: Length = "medium",
    style: Style = "bullets",
    progress: Callable[[int, int], None] | None = None,
    section_tokens: int = SECTION_TOKENS,
    trace: bool = True,
) -> Summary:
    """Summarise ``source``: text, a file or folder path, or loaded documents.

    ``progress(done, total)`` is called after each section is read (the CLI draws a bar).
    A ``str`` is text unless it names an existing file or folder; pass a ``Path`` to be sure.
    """
    if length not in POINTS:
        raise InvalidRequestError(f"length must be short, medium or long, not {length!r}.")
    if style not in ("bullets", "prose"):
        raise InvalidRequestError(f"style must be bullets or prose, not {style!r}.")
    documents = _documents(source)
    if model is None:
        from lamina.models import get_model

        model = get_model()
    target = POINTS[length]
    map_prompt = builtin_prompt("apps/summarize_map")
    reduce_prompt = builtin_prompt("apps/summarize_reduce")
    chunks, titles = _sections(documents, model, map_prompt, section_tokens)
    per_section = max(1, min(4, math.ceil(2 * target / len(chunks))))
    tracer = Tracer(enabled=trace)
    usage = Usage()

    def ask(prompt: str, schema: dict[str, Any], settings: dict[str, Any], tokens: int) -> Any:
        reply = model.chat(prompt, json_schema=schema, **as_options(settings, max_tokens=tokens))
        accumulate(usage, reply.usage)
        add_usage(reply.usage)
        try:
            return json.loads(reply.text)
        except ValueError:  # a model that ignores the schema (an API model): its lines
            lines = [line.strip()[:MAX_POINT_CHARS] for line in reply.text.splitlines()]
            return {"points": [line for line in lines if line]}

    with tracer.span("summarize.run", sections=len(chunks), length=length) as root:
        trace_id = tracer.trace_id(root)
        points: list[_Point] = []
        for i, (chunk, title) in enumerate(zip(chunks, titles, strict=True)):
            with tracer.span("summarize.map", section=i + 1, source=title) as span:
                prompt = map_prompt.render(
                    title=title, text=" ".join(chunk.text.split()), points=per_section
                )
                # A token is at least one character: room for every point at its longest, so
                # the grammar can always close the JSON.
                tokens = per_section * (MAX_POINT_CHARS + 8) + 16
                reply = ask(prompt, _points_schema(per_section), map_prompt.settings, tokens)
                cleaned = [_clean(p, title) for p in _strings(reply)]
                new = [_Point(p, [i]) for p in cleaned if p]
                span.set_attribute("lamina.points", json.dumps([p.text for p in new]))
                points.extend(new)
            if progress is not None:
                progress(i + 1, len(chunks))
        rounds = 0
        while len(points) > target and rounds < MAX_ROUNDS:
            rounds += 1
            with tracer.span("summarize.reduce", round=rounds, points=len(points)):
                points = _reduce(points, target, model, reduce_prompt, ask)
        points = _dedupe(points)[:target]
    return _result(points, chunks, documents, style, len(chunks), rounds, usage, trace_id)


def _documents(
    source: str | os.PathLike[str] | LoadedDocument | Sequence[LoadedDocument],
) -> list[LoadedDocument]:
    if isinstance(source, LoadedDocument):
        return [source]
    if isinstance(source, str) and not os.path.exists(source):
        return [text_document(source)]
    if isinstance(source, str | os.PathLike):
        return load_inputs([source])
    documents = list(source)
    if not documents:
        raise InvalidRequestError("Nothing to summarise: no documents were given.")
    return documents


def _sections(
    documents: Sequence[LoadedDocument],
    model: ChatModel,
    prompt: Any,
    section_tokens: int,
) -> tuple[list[Chunk], list[str]]:
    """Sections sized so that the map prompt and its reply fit the window."""
    overhead = model.count_tokens(prompt.render(title="", text="", points=4)) + 4 * 80 + 32
    room = model.context_window - overhead
    if room < 64:
        raise InvalidRequestError(
            f"The model {model.name!r} has a {model.context_window}-token window: too small to "
            f"summarise in (the prompt alone takes {overhead})."
        )
    chunker = Chunker(
        max_tokens=min(section_tokens, room), overlap=0, counter=FunctionCounter(model.count_tokens)
    )
    chunks: list[Chunk] = []
    titles: list[str] = []
    for document in documents:
        name = document.document.title or document.document.source.rsplit("/", 1)[-1]
        for chunk in chunker.chunk(document):
            chunks.append(chunk)
            titles.append(" > ".join(dict.fromkeys(p for p in [name, *chunk.heading_path] if p)))
    if not chunks:
        raise InvalidRequestError("The input has no text to summarise.")
    return chunks, titles


def _strings(reply: Any) -> list[str]:
    points = reply.get("points") if isinstance(reply, dict) else None
    return [p for p in points if isinstance(p, str)] if isinstance(points, list) else []


def _reduce(
    points: list[_Point],
    target: int,
    model: ChatModel,
    prompt: Any,
    ask: Callable[[str, dict[str, Any], dict[str, Any], int], Any],
) -> list[_Point]:
    """One round: batches of points that fit the window, each combined into fewer."""
    batches: list[list[_Point]] = [[]]
    budget = model.context_window // 2
    for point in points:
        trial = [*batches[-1], point]
        rendered = prompt.render(points=[p.text for p in trial], most=target)
        if batches[-1] and model.count_tokens(rendered) > budget:
            batches.append([point])
        else:
            batches[-1] = trial
    share = max(1, math.ceil(target / len(batches))) if len(batches) > 1 else target
    combined: list[_Point] = []
    for batch in batches:
        ids = list(range(1, len(batch) + 1))
        item = {
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 8, "maxLength": MAX_POINT_CHARS},
                "from": {
                    "type": "array",
                    "items": {"type": "integer", "enum": ids},
                    "minItems": 1,
                    "maxItems": 4,
                },
            },
            "required": ["text", "from"],
        }
        rendered = prompt.render(points=[p.text for p in batch], most=share)
        tokens = share * (MAX_POINT_CHARS + 48) + 16  # the text at its longest, and "from"
        reply = ask(rendered, _points_schema(share, item), prompt.settings, tokens)
        made = reply.get("points") if isinstance(reply, dict) else None
        for entry in made if isinstance(made, list) else []:
            if not isinstance(entry, dict) or not str(entry.get("text", "")).strip():
                continue
            chosen = [int(n) for n in entry.get("from", []) if isinstance(n, int) and n in ids]
            origins = [o for n in dict.fromkeys(chosen) for o in batch[n - 1].origins]
            if not origins:  # a model-caused gap: link to the whole batch's sections
                origins = [o for p in batch for o in p.origins]
            text = _clean(str(entry["text"]))
            if text:
                combined.append(_Point(text, list(dict.fromkeys(origins))))
    return combined if combined else points


_MARKER = re.compile(r"^(?:[-*\u2022]|\d{1,2}[.)])\s+")


def _clean(text: str, title: str = "") -> str:
    """A point without the list marker or the section title a small model copies in front
    (the summary numbers and links its points itself).

    >>> _clean("2. RAG > Chunking > Chunks overlap by a sentence.", "rag.md > RAG > Chunking")
    'Chunks overlap by a sentence.'
    >>> _clean("RAG > Chunking", "rag.md > RAG > Chunking")
    ''
    """
    text = _MARKER.sub("", text.strip())
    parts = text.split(" > ")
    known = {part.strip() for part in title.split(" > ")}
    while len(parts) > 1 and parts[0].strip() in known:
        parts.pop(0)
    if len(parts) == 1 and parts[0].strip() in known:
        return ""  # a heading, not a point
    text = _MARKER.sub("", " > ".join(parts).strip())
    return text if _sentence_like(text) else ""


def _sentence_like(text: str) -> bool:
    """Whether a point reads as a statement rather than a small model's loop: a word of
    letters, and (from four words on) no word repeated more often than every other one.

    >>> _sentence_like("LoRA trains two small matrices."), _sentence_like("1. 1. 1. 1. 1. 1.")
    (True, False)
    >>> _sentence_like("GGUF format > Loss > GGUF format > GGUF format > GGUF format")
    False
    """
    words = text.lower().split()
    if not any(sum(c.isalpha() for c in w) >= 2 for w in words):
        return False
    return len(words) < 4 or len(set(words)) * 2 >= len(words)


def _dedupe(points: list[_Point]) -> list[_Point]:
    seen: set[str] = set()
    out = []
    for point in points:
        key = " ".join(point.text.lower().split())
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out


def _result(
    points: list[_Point],
    chunks: list[Chunk],
    documents: Sequence[LoadedDocument],
    style: Style,
    read: int,
    rounds: int,
    usage: Usage,
    trace_id: str | None,
) -> Summary:
    sources = {d.document.id: d.document.source for d in documents}
    numbers: dict[int, Section] = {}
    out_points = []
    for point in points:
        linked = []
        for origin in point.origins:
            if origin not in numbers:
                chunk = chunks[origin]
                numbers[origin] = Section(
                    n=len(numbers) + 1,
                    source=sources.get(chunk.document_id, ""),
                    heading=" > ".join(chunk.heading_path),
                    page=chunk.page,
                    start=chunk.start,
                    end=chunk.end,
                )
            linked.append(numbers[origin])
        out_points.append(SummaryPoint(text=point.text, sections=linked))

    def marked(point: SummaryPoint) -> str:
        return f"{point.text} {''.join(f'[{s.n}]' for s in point.sections)}"

    if style == "bullets":
        text = "\n".join(f"- {marked(p)}" for p in out_points)
    else:
        text = " ".join(marked(p) for p in out_points)
    return Summary(
        text=text,
        points=out_points,
        sections=sorted(numbers.values(), key=lambda s: s.n),
        read=read,
        rounds=rounds,
        usage=usage,
        trace_id=trace_id,
    )
