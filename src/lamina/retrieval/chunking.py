"""Structure-aware chunking sized in tokens of the embedding model.

Headings split the document into sections; inside a section, whole paragraphs are packed into
chunks of at most ``max_tokens`` tokens; a paragraph too long for one chunk is cut between
sentences; only a single sentence longer than ``max_tokens`` is cut inside (between words, or
inside a word as a last resort). Consecutive chunks of a section share up to ``overlap``
tokens of whole sentences. A chunk never spans two sections or two PDF pages, carries its
``heading_path`` and ``page``, and is an exact span: ``full_text[start:end] == text``.

    >>> from lamina.retrieval.documents import Block, Document, LoadedDocument
    >>> text = "Install\\n\\nRun pip. Then run lamina. Enjoy it."
    >>> doc = LoadedDocument(
    ...     document=Document.for_source("guide.md", content_hash="0" * 64), text=text,
    ...     blocks=[Block(kind="heading", text="Install", start=0, end=7, level=1),
    ...             Block(kind="paragraph", text=text[9:], start=9, end=len(text))])
    >>> words = lambda s: len(s.split())
    >>> [(c.heading_path, c.text) for c in chunk_document(doc, max_tokens=5, overlap=3,
    ...                                                   counter=words)]
    [(['Install'], 'Run pip. Then run lamina.'), (['Install'], 'Then run lamina. Enjoy it.')]

Token counts are summed over sentences, which is exact for WordPiece (it splits on white space
and punctuation first) and close for BPE tokenizers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from lamina.errors import ConfigError, InvalidRequestError
from lamina.models.embeddings.base import Embedder
from lamina.retrieval.documents import Chunk, LoadedDocument
from lamina.retrieval.sentences import split_sentences
from lamina.retrieval.tokens import EmbedderCounter, TokenCounter, as_counter

__all__ = ["Chunker", "chunk_document"]

_WORD = re.compile(r"\S+")
_LINE = re.compile(r"[^\n]*\S[^\n]*")


@dataclass(slots=True)
class _Unit:
    """A sentence (or code line, or piece of an over-long sentence) and its token count."""

    start: int
    end: int
    tokens: int = 0


@dataclass(slots=True)
class _Section:
    """Consecutive blocks under one heading path on one page; a block is a list of units."""

    path: tuple[str, ...]
    page: int | None
    blocks: list[list[_Unit]] = field(default_factory=list)


class Chunker:
    """Cuts :class:`LoadedDocument` s into :class:`Chunk` s; see the module docstring.

    ``counter`` is a :class:`TokenCounter`, a ``str -> int`` function, or ``None`` for the
    all-MiniLM-L6-v2 tokenizer (loaded on first use). Note the model itself reads at most 256
    tokens *including* its two special tokens, so ``max_tokens=254`` fills it exactly.
    :meth:`for_embedder` sizes chunks for any embedder (an index's chunker is built so).
    """

    def __init__(
        self,
        max_tokens: int = 256,
        overlap: int = 32,
        counter: TokenCounter | Callable[[str], int] | None = None,
    ) -> None:
        if max_tokens < 1:
            raise InvalidRequestError(f"max_tokens must be at least 1, got {max_tokens}.")
        if not 0 <= overlap < max_tokens:
            raise InvalidRequestError(
                f"overlap must be between 0 and max_tokens - 1 ({max_tokens - 1}), got "
                f"{overlap}; a quarter of max_tokens or less is usual."
            )
        self.max_tokens = max_tokens
        self.overlap = overlap
        self._given = counter
        self._counter: TokenCounter | None = None

    @classmethod
    def for_embedder(cls, embedder: Embedder, *, max_tokens: int, overlap: int) -> Chunker:
        """A chunker that counts ``embedder``'s own tokens (:class:`EmbedderCounter`).

        Chunks never exceed what the model reads: if it reads fewer than ``max_tokens`` (plus
        the tokens it adds around a text), chunks fill it and the overlap shrinks in
        proportion.
        """
        counter = EmbedderCounter(embedder)
        room = embedder.max_tokens - counter.added
        if room < 1:
            raise ConfigError(
                f"The embedder {embedder.name!r} reads at most {embedder.max_tokens} tokens, "
                f"{counter.added} of them its own: no room for any text. Check its max_tokens."
            )
        if room < max_tokens:
            overlap, max_tokens = overlap * room // max_tokens, room
        return cls(max_tokens, overlap, counter)

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = as_counter(self._given)
        return self._counter

    def chunk(self, document: LoadedDocument) -> list[Chunk]:
        """The chunks of one document, in document order."""
        return self._chunk_batch([document])[0]

    def chunk_many(
        self, documents: Iterable[LoadedDocument], *, batch_size: int = 64
    ) -> Iterator[list[Chunk]]:
        """One list of chunks per document, in order; tokenizes ``batch_size`` docs per call."""
        if batch_size < 1:
            raise InvalidRequestError(f"batch_size must be at least 1, got {batch_size}.")
        iterator = iter(documents)
        while batch := list(islice(iterator, batch_size)):
            yield from self._chunk_batch(batch)

    def _chunk_batch(self, documents: Sequence[LoadedDocument]) -> list[list[Chunk]]:
        plans = [_sections(document) for document in documents]
        units = [
            (document.text, unit)
            for document, sections in zip(documents, plans, strict=True)
            for section in sections
            for block in section.blocks
            for unit in block
        ]
        counts = self.counter.count_batch([text[u.start : u.end] for text, u in units])
        for (_, unit), count in zip(units, counts, strict=True):
            unit.tokens = count
        for document, sections in zip(documents, plans, strict=True):
            for section in sections:
                section.blocks = [
                    self._fit(document.text, block)
                    if any(u.tokens > self.max_tokens for u in block)
                    else block
                    for block in section.blocks
                ]
        return [
            [
                Chunk.for_span(
                    document.document,
                    document.text,
                    group[0].start,
                    group[-1].end,
                    page=section.page,
                    heading_path=section.path,
                )
                for section in sections
                for group in self._pack(section.blocks)
            ]
            for document, sections in zip(documents, plans, strict=True)
        ]

    def _pack(self, blocks: list[list[_Unit]]) -> list[list[_Unit]]:
        """Greedy packing of one section: whole blocks when they fit, else whole units."""
        limit, chunks = self.max_tokens, []
        current: list[_Unit] = []
        size = 0
        for block in blocks:
            block_size = sum(u.tokens for u in block)
            if current and block_size <= limit < size + block_size:
                chunks.append(current)
                current = self._overlap(current, block_size)  # start the block on a fresh chunk
                size = sum(u.tokens for u in current)
            for unit in block:
                if current and size + unit.tokens > limit:
                    chunks.append(current)
                    current = self._overlap(current, unit.tokens)
                    size = sum(u.tokens for u in current)
                current.append(unit)
                size += unit.tokens
        if current:
            chunks.append(current)
        return chunks

    def _overlap(self, previous: list[_Unit], incoming: int) -> list[_Unit]:
        """The last whole units of ``previous`` within ``overlap`` that leave room for more."""
        budget = min(self.overlap, self.max_tokens - incoming)
        taken, size = 0, 0
        for unit in reversed(previous):
            if size + unit.tokens > budget or taken + 1 == len(previous):
                break  # never repeat the whole previous chunk
            size += unit.tokens
            taken += 1
        return previous[len(previous) - taken :] if taken else []

    def _fit(self, text: str, block: list[_Unit]) -> list[_Unit]:
        """Replace each unit over ``max_tokens`` by pieces that fit: words, then characters."""
        fitted: list[_Unit] = []
        for unit in block:
            if unit.tokens <= self.max_tokens:
                fitted.append(unit)
                continue
            words = [_Unit(m.start(), m.end()) for m in _WORD.finditer(text, unit.start, unit.end)]
            self._count(text, words)
            pieces: list[_Unit] = []
            for word in words:
                for part in (
                    self._split_word(text, word) if word.tokens > self.max_tokens else [word]
                ):
                    last = pieces[-1] if pieces else None
                    if last is not None and last.tokens + part.tokens <= self.max_tokens:
                        last.end, last.tokens = part.end, last.tokens + part.tokens
                    else:
                        pieces.append(_Unit(part.start, part.end, part.tokens))
            fitted.extend(pieces)
        return fitted

    def _split_word(self, text: str, word: _Unit) -> list[_Unit]:
        """Cut a single over-long word at character positions until every piece fits."""
        pending, done = [word], list[_Unit]()
        while pending:
            parts: list[_Unit] = []
            for unit in pending:
                length = unit.end - unit.start
                step = max(1, length * self.max_tokens // max(unit.tokens, 1) * 9 // 10)
                parts.extend(
                    _Unit(at, min(at + step, unit.end)) for at in range(unit.start, unit.end, step)
                )
            self._count(text, parts)
            done.extend(p for p in parts if p.tokens <= self.max_tokens or p.end - p.start == 1)
            pending = [p for p in parts if p.tokens > self.max_tokens and p.end - p.start > 1]
            for unit in pending:  # halve what is still too long: always progresses
                unit.tokens = max(unit.tokens, 2 * self.max_tokens)
        return sorted(done, key=lambda unit: unit.start)

    def _count(self, text: str, units: list[_Unit]) -> None:
        counts = self.counter.count_batch([text[u.start : u.end] for u in units])
        for unit, count in zip(units, counts, strict=True):
            unit.tokens = count


def _sections(document: LoadedDocument) -> list[_Section]:
    """Group blocks into sections by heading path and page; split blocks into units.

    A heading with no text under it (the next heading is not deeper) becomes a section of its
    own, so text that exists only as a heading is still found.
    """
    text = document.text
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    bare: tuple[tuple[str, ...], int, int, int | None, int] | None = None  # heading, no body yet
    for block in document.blocks:
        if block.kind == "heading":
            level = block.level if block.level is not None else 1
            if bare is not None and level <= bare[4]:
                path, start, end, page, _ = bare
                sections.append(_Section(path, page, [[_Unit(start, end)]]))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, block.text))
            bare = (tuple(t for _, t in stack), block.start, block.end, block.page, level)
            continue
        if bare is not None or not sections or sections[-1].page != block.page:
            sections.append(_Section(tuple(t for _, t in stack), block.page))
        bare = None
        if block.kind == "code":
            units = [
                _Unit(m.start(), m.end()) for m in _LINE.finditer(text, block.start, block.end)
            ]
        else:
            units = [_Unit(s, e) for s, e in split_sentences(text, block.start, block.end)]
        if units:
            sections[-1].blocks.append(units)
    if bare is not None:
        path, start, end, page, _ = bare
        sections.append(_Section(path, page, [[_Unit(start, end)]]))
    return sections


def chunk_document(
    document: LoadedDocument,
    *,
    max_tokens: int = 256,
    overlap: int = 32,
    counter: TokenCounter | Callable[[str], int] | None = None,
) -> list[Chunk]:
    """Chunk one document; see :class:`Chunker` (reuse one Chunker for many documents)."""
    return Chunker(max_tokens, overlap, counter).chunk(document)
