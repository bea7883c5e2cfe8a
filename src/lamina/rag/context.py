"""Pack retrieved passages into the model's window: dedupe, keep the best, number them.

Built on the one context builder of :mod:`lamina.prompts.context`.

Nothing is cut silently: a passage that is a duplicate, or that does not fit the token budget,
is recorded in ``left_out`` with the reason. A question that does not fit even with no passages
raises :class:`~lamina.errors.ContextOverflowError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lamina.prompts.context import ContextBuilder, Piece, same_text
from lamina.rag.answer import LeftOut, SourceRef
from lamina.retrieval.store.base import Hit

__all__ = ["Packed", "Passage", "pack"]

KNOWLEDGE = "knowledge"


@dataclass(frozen=True)
class Passage:
    """Passage ``[n]`` of the prompt: one retrieved chunk."""

    n: int
    hit: Hit

    @property
    def text(self) -> str:
        return self.hit.text

    @property
    def title(self) -> str:
        chunk = self.hit.chunk
        parts = [chunk.title or chunk.source.rsplit("/", 1)[-1], *chunk.chunk.heading_path]
        return " > ".join(dict.fromkeys(p for p in parts if p))

    def ref(self) -> SourceRef:
        c = self.hit.chunk
        return SourceRef(
            n=self.n,
            source=c.source,
            title=c.title,
            page=c.chunk.page,
            start=c.chunk.start,
            end=c.chunk.end,
            score=self.hit.score,
        )


@dataclass
class Packed:
    passages: list[Passage]
    left_out: list[LeftOut] = field(default_factory=list)
    #: Tokens of the rendered prompt with these passages.
    tokens: int = 0


def _left(hit: Hit, reason: str) -> LeftOut:
    c = hit.chunk
    return LeftOut(
        source=c.source,
        page=c.chunk.page,
        start=c.chunk.start,
        end=c.chunk.end,
        score=hit.score,
        reason=reason,
    )


def _overlap(a: Hit, b: Hit) -> float:
    """Share of the shorter span that the two chunks of one document have in common."""
    ca, cb = a.chunk, b.chunk
    if ca.source != cb.source or ca.collection != cb.collection:
        return 0.0
    shared = min(ca.chunk.end, cb.chunk.end) - max(ca.chunk.start, cb.chunk.start)
    shorter = min(ca.chunk.end - ca.chunk.start, cb.chunk.end - cb.chunk.start) or 1
    return max(0.0, shared) / shorter


def pack(
    hits: Sequence[Hit],
    count_prompt: Callable[[list[Passage]], int],
    budget: int,
    *,
    model: str = "model",
    window: int | None = None,
    max_passages: int = 8,
) -> Packed:
    """Greedily add hits in rank order while ``count_prompt(passages) <= budget``.

    ``count_prompt`` counts the tokens of the whole prompt built from the given passages, so
    the template's own text and the question are part of the budget. Exact duplicates and chunks
    mostly inside one already packed (overlapping chunk windows) are left out as duplicates.
    The packing is :class:`~lamina.prompts.context.ContextBuilder`'s, with one ``knowledge``
    section whose pieces are the hits.

    >>> from lamina.retrieval.documents import Chunk
    >>> from lamina.retrieval.store.base import StoredChunk
    >>> def hit(key, text):
    ...     c = Chunk(id=str(key), document_id="d", text=text, start=key * 100, end=key * 100 + 50)
    ...     return Hit(chunk=StoredChunk(key=key, collection="c", chunk=c, source="a.md"), score=1)
    >>> packed = pack([hit(1, "one two"), hit(2, "three four five")],
    ...               lambda ps: 3 + sum(len(p.text.split()) for p in ps), budget=6)
    >>> [p.n for p in packed.passages], [x.reason for x in packed.left_out]
    ([1], ['budget'])
    """

    def passages(pieces: Sequence[Piece]) -> list[Passage]:
        return [Passage(n, piece.data) for n, piece in enumerate(pieces, start=1)]

    builder = ContextBuilder(
        lambda selection: count_prompt(passages(selection.get(KNOWLEDGE, ()))),
        budget,
        model=model,
        window=window,
    )
    builder.add(
        KNOWLEDGE,
        [Piece(hit.text, key=hit.chunk.source, data=hit) for hit in hits],
        max_items=max_passages,
        duplicate=_duplicate,
    )
    context = builder.build()
    return Packed(
        passages=passages(context.chosen[KNOWLEDGE]),
        left_out=[_left(o.piece.data, o.reason) for o in context.omitted],
        tokens=context.tokens,
    )


def _duplicate(piece: Piece, chosen: Sequence[Piece]) -> bool:
    """The same text as a packed passage, or mostly inside one (overlapping chunk windows)."""
    return same_text(piece, chosen) or any(_overlap(piece.data, c.data) > 0.8 for c in chosen)
