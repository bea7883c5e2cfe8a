"""Turn files into text with structure: ``load(path)`` and ``iter_jsonl(path)``.

``load`` picks the reader by extension: ``.pdf`` (pypdf, page numbers kept), ``.docx``
(python-docx, heading styles become heading levels), ``.html``/``.htm`` (selectolax, boilerplate
dropped), ``.md``/``.markdown`` (ATX and setext headings) and any other extension as plain
text. Known binary formats it cannot read (``.doc``, images, archives...) are refused up front.

Text policy: files are decoded as strict UTF-8 (a UTF-8 or UTF-16 byte-order mark is honoured,
and an HTML ``<meta charset>`` is used when present). Nothing is guessed: bytes that are not
valid UTF-8 raise :class:`LoadError` with the offset of the first bad byte, and the caller may
retry with ``encoding="cp1252"`` (or whatever the file really is). A NUL byte means a binary
file and is refused. Every failure is a :class:`LoadError` naming the file and the reason:

    >>> from pathlib import Path
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "guide.md").write_text("# Guide\\n\\n## Install\\n\\nRun pip.\\n")
    >>> loaded = load(folder / "guide.md")
    >>> loaded.document.title, [(b.kind, b.text) for b in loaded.blocks]
    ('Guide', [('heading', 'Guide'), ('heading', 'Install'), ('paragraph', 'Run pip.')])
    >>> _ = (folder / "empty.txt").write_bytes(b"")
    >>> load(folder / "empty.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lamina.retrieval.errors.LoadError: Cannot load '.../empty.txt': the file is empty (0 bytes)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lamina.retrieval._markup import html_blocks, markdown_blocks, text_blocks
from lamina.retrieval._office import docx_blocks, pdf_blocks
from lamina.retrieval._text import BlockBuilder, read_bytes, read_text, split_paragraphs
from lamina.retrieval.documents import Document, LoadedDocument
from lamina.retrieval.errors import LoadError

__all__ = ["LoadError", "iter_jsonl", "load"]

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mkdn"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
#: Formats that are not text and that no loader reads: refused with advice, not misread.
UNSUPPORTED_SUFFIXES = frozenset(
    {
        *(".doc", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".rtf", ".epub"),
        *(".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tiff", ".ico"),
        *(".zip", ".gz", ".tar", ".bz2", ".xz", ".7z", ".rar"),
        *(".exe", ".dll", ".so", ".dylib", ".bin", ".pyc", ".class", ".o"),
        *(".mp3", ".wav", ".mp4", ".mov", ".avi", ".mkv", ".sqlite", ".db"),
    }
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def load(
    path: str | os.PathLike[str], *, source: str | None = None, encoding: str = "utf-8"
) -> LoadedDocument:
    """Load one file as a :class:`LoadedDocument`, or raise :class:`LoadError` saying why not.

    ``source`` names the document (default: the resolved path) and so fixes its id; pass a
    relative path or URL to keep ids stable when the corpus moves. ``encoding`` applies to text
    formats (plain text, Markdown, HTML without a declared charset).
    """
    file = Path(path)
    name = source if source is not None else str(file.resolve())
    suffix = file.suffix.lower()
    if file.is_dir():
        raise LoadError(name, "it is a directory; load the files in it one by one")
    if suffix in UNSUPPORTED_SUFFIXES:
        advice = "convert it to .docx, .pdf or text" if suffix in (".doc", ".rtf", ".odt") else ""
        raise LoadError(name, f"{suffix} files are not supported{'; ' + advice if advice else ''}")
    if suffix in (".jsonl", ".ndjson"):
        raise LoadError(name, "a JSONL file holds many documents; read it with iter_jsonl(path)")

    metadata: dict[str, Any]
    title: str | None
    if suffix in (".pdf", ".docx"):
        data, digest = read_bytes(file, name)
        extract = pdf_blocks if suffix == ".pdf" else docx_blocks
        title, text, blocks, metadata = extract(data, name)
        del data
    else:
        if suffix in HTML_SUFFIXES:
            encoding = _html_charset(file) or encoding
        text, digest, used = read_text(file, name, encoding)
        if suffix in HTML_SUFFIXES:
            title, text, blocks = html_blocks(text)
            metadata = {"format": "html", "encoding": used}
            empty = "no text is left once scripts, navigation and other boilerplate are dropped"
        elif suffix in MARKDOWN_SUFFIXES:
            title, blocks = markdown_blocks(text)
            metadata = {"format": "markdown", "encoding": used}
            empty = "the file holds only whitespace"
        else:
            title, blocks = None, text_blocks(text)
            metadata = {"format": "text", "encoding": used}
            empty = "the file holds only whitespace"
        if not blocks:
            raise LoadError(name, empty)
    document = Document.for_source(name, content_hash=digest, title=title, metadata=metadata)
    return LoadedDocument(document=document, text=text, blocks=blocks)


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    source: str | None = None,
    on_error: Callable[[LoadError], None] | None = None,
) -> Iterator[LoadedDocument]:
    """One :class:`LoadedDocument` per line of a JSONL corpus, streamed.

    Fits BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``, optional ``metadata``); ``id``
    and ``contents`` are accepted too. The title becomes a level-1 heading block before the
    text (so chunks carry it in ``heading_path``); the record's id is ``metadata["_id"]`` and
    the document's ``source`` is ``<file>#<_id>``. ``content_hash`` hashes the line's bytes.

    A bad line (not JSON, no id, no text) raises :class:`LoadError` naming the line; pass
    ``on_error`` to be handed each error and go on with the next line instead.
    """
    file = Path(path)
    base = source if source is not None else str(file.resolve())
    try:
        stream = file.open("rb")
    except OSError as error:
        raise LoadError(base, f"the file cannot be read ({error.strerror or error})") from error
    with stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                yield _jsonl_record(raw, f"{base}:{number}", base)
            except LoadError as error:
                if on_error is None:
                    raise
                on_error(error)


def _jsonl_record(raw: bytes, where: str, base: str) -> LoadedDocument:
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise LoadError(where, f"the line is not valid UTF-8 JSON ({error})") from error
    if not isinstance(record, dict):
        raise LoadError(where, f"expected a JSON object, got {type(record).__name__}")
    record_id = record.get("_id", record.get("id"))
    if record_id is None or record_id == "":
        raise LoadError(where, "the record has no '_id' (or 'id') field")
    title = record.get("title") or ""
    body = record.get("text", record.get("contents"))
    if not isinstance(title, str) or not isinstance(body, str | None):
        raise LoadError(where, "'title' and 'text' must be strings")
    title, body = title.strip(), (body or "").strip()
    if not title and not body:
        raise LoadError(where, f"record {record_id!r} has neither 'title' nor 'text'")

    builder = BlockBuilder()
    builder.add("heading", title, level=1)
    for paragraph in split_paragraphs(body):
        builder.add("paragraph", paragraph)
    text, blocks = builder.build()
    metadata: dict[str, Any] = {"format": "jsonl", "_id": str(record_id)}
    if isinstance(record.get("metadata"), dict):
        metadata["record"] = record["metadata"]
    document = Document.for_source(
        f"{base}#{record_id}",
        content_hash=hashlib.sha256(raw.rstrip(b"\r\n")).hexdigest(),
        title=title or None,
        metadata=metadata,
    )
    return LoadedDocument(document=document, text=text, blocks=blocks)


def _html_charset(file: Path) -> str | None:
    """The charset an HTML file declares in its first 4 KiB, if Python knows that codec."""
    try:
        with file.open("rb") as stream:
            head = stream.read(4096)
    except OSError:
        return None  # read_text reports the error
    match = _META_CHARSET.search(head)
    if not match:
        return None
    name = match.group(1).decode("ascii").lower()
    try:
        "".encode(name)
    except LookupError:
        return None
    return name
