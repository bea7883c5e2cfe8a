"""The data of the retrieval layer: a source Document, its text Blocks, and Chunks of it.

A loader turns a file into a :class:`LoadedDocument`: the :class:`Document` record, the
extracted full text, and the structural :class:`Block` s (headings, paragraphs, code) found in
it, each a ``[start, end)`` span of that text. The chunker cuts the text into :class:`Chunk` s
that keep the same promise, so every chunk traces back to an exact span of its source:

    >>> doc = Document.for_source("notes.txt", content_hash="0" * 64)
    >>> text = "Install\\n\\nRun pip."
    >>> chunk = Chunk.for_span(doc, text, 9, 17, heading_path=["Install"])
    >>> text[chunk.start : chunk.end] == chunk.text == "Run pip."
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Block", "BlockKind", "Chunk", "Document", "LoadedDocument", "stable_id"]

BlockKind = Literal["heading", "paragraph", "code"]


def stable_id(*parts: str) -> str:
    """A 32-hex-digit id that depends only on ``parts``.

    >>> stable_id("a.txt") == stable_id("a.txt") != stable_id("b.txt")
    True
    """
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


class Document(BaseModel):
    """One source: a file, or one record of a JSONL corpus.

    ``id`` is a stable hash of ``source`` (the resolved path, or ``path#record-id``), so loading
    the same file twice gives the same id; ``content_hash`` is the SHA-256 of the raw bytes, so
    a changed file is noticed. ``metadata`` holds what the format offers (``format``, ``pages``,
    ``encoding``, a JSONL record's ``_id``...).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    title: str | None = None
    content_hash: str
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def for_source(
        cls,
        source: str,
        *,
        content_hash: str,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Document:
        """Build a Document whose id is derived from ``source``."""
        return cls(
            id=stable_id(source),
            source=source,
            title=title,
            content_hash=content_hash,
            metadata=metadata or {},
        )


class Block(BaseModel):
    """A heading, paragraph or code block: ``text == full_text[start:end]``.

    ``level`` is set for headings only: 0 for a document title (a DOCX "Title" paragraph),
    1-6 for h1-h6, ``#`` to ``######``, "Heading 1"... ``page`` is the 1-based PDF page.
    """

    model_config = ConfigDict(frozen=True)

    kind: BlockKind
    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    level: int | None = None
    page: int | None = None


class LoadedDocument(BaseModel):
    """What a loader returns: the Document, its extracted full text and its Blocks, in order.

    For Markdown and plain text the full text is the decoded file itself (newlines normalised
    to ``\\n``), so offsets point into the source; for PDF, DOCX, HTML and JSONL it is the
    blocks' text joined by blank lines.
    """

    model_config = ConfigDict(frozen=True)

    document: Document
    text: str
    blocks: list[Block]


class Chunk(BaseModel):
    """A piece of a document sized for the embedding model: ``text == full_text[start:end]``.

    ``heading_path`` lists the headings above the chunk, outermost first (``["Install",
    "From source"]``); ``page`` is the 1-based PDF page it lies on (chunks never straddle pages).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    document_id: str
    text: str
    page: int | None = None
    heading_path: list[str] = Field(default_factory=list)
    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @classmethod
    def for_span(
        cls,
        document: Document,
        full_text: str,
        start: int,
        end: int,
        *,
        page: int | None = None,
        heading_path: Sequence[str] = (),
    ) -> Chunk:
        """The chunk covering ``full_text[start:end]``; its id is stable for that content."""
        return cls(
            id=stable_id(document.id, document.content_hash, str(start), str(end)),
            document_id=document.id,
            text=full_text[start:end],
            page=page,
            heading_path=list(heading_path),
            start=start,
            end=end,
        )

    def contextual_text(self, title: str | None = None) -> str:
        """The text to embed: title and heading path as a first line, then the chunk.

        Headings are not inside ``text`` (it is an exact span), so this puts them back.
        A title that is also the first heading is said once.

        >>> Chunk(id="c", document_id="d", text="Run pip.", heading_path=["Install"],
        ...       start=0, end=8).contextual_text("Guide")
        'Guide > Install\\nRun pip.'
        """
        path = list(self.heading_path)
        # A Markdown H1 or a JSONL title is both the title and the first heading: say it once.
        context = [title, *path] if title and path[:1] != [title] else path
        return f"{' > '.join(context)}\n{self.text}" if context else self.text
