"""Turn files into text with structure: ``load(path)`` and ``iter_jsonl(path)``.

``load`` picks the reader by extension: ``.pdf`` (pypdf, page numbers kept), ``.docx``
(python-docx, heading styles become heading levels), ``.html``/``.htm`` (selectolax, boilerplate
dropped), ``.md``/``.markdown`` (ATX and setext headings) and any other extension as plain
text. Known binary formats it cannot read (``.doc``, images, archives...) are refused up front.

Text policy: files are decoded as strict UTF-8 (a UTF-8 or UTF-16 byte-order mark is honoured,
and an HTML ``<meta charset>`` is used when present). Nothing is guessed: bytes that are not
valid UTF-8 raise :class:`LoadError` with the offset of the first bad byte, and the caller may
retry with ``encoding="cp1252"`` (or whatever the file really is). A NUL byte means a binary
file and is refused. Every document, whatever its format, then passes one boundary,
:func:`finish`: lone UTF-16 surrogates (which JSON can spell and PDFs can hold) and NUL become
U+FFFD there, one code point for one so offsets hold, and a text longer than
``loaders.max_document_chars`` is refused. Limits come from the ``loaders`` settings
(:class:`~lamina.settings.LoaderSettings`). Every failure is a :class:`LoadError` naming the
file and the reason:

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

from lamina.retrieval._markup import html_blocks, markdown_blocks, nesting_depth, text_blocks
from lamina.retrieval._office import docx_blocks, pdf_blocks
from lamina.retrieval._text import (
    BlockBuilder,
    normalize_text,
    read_bytes,
    read_text,
    split_paragraphs,
    text_limit_error,
)
from lamina.retrieval.documents import Block, Document, LoadedDocument
from lamina.retrieval.errors import LoadError
from lamina.settings import LoaderSettings, get_settings

__all__ = ["LoadError", "finish", "iter_jsonl", "jsonl_records", "load", "source_name"]

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
    path: str | os.PathLike[str],
    *,
    source: str | None = None,
    encoding: str = "utf-8",
    limits: LoaderSettings | None = None,
) -> LoadedDocument:
    """Load one file as a :class:`LoadedDocument`, or raise :class:`LoadError` saying why not.

    ``source`` names the document (default: the resolved path) and so fixes its id; pass a
    relative path or URL to keep ids stable when the corpus moves. ``encoding`` applies to text
    formats (plain text, Markdown, HTML without a declared charset). ``limits`` default to the
    ``loaders`` settings.
    """
    limits = limits or get_settings().loaders
    file = Path(path)
    name = source if source is not None else source_name(file)
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
        title, text, blocks, metadata = extract(data, name, limits)
        del data
    else:
        if suffix in HTML_SUFFIXES:
            encoding = _html_charset(file) or encoding
        text, digest, used = read_text(file, name, encoding)
        if len(text) > limits.max_document_chars:
            raise text_limit_error(name, limits.max_document_chars)
        if suffix in HTML_SUFFIXES:
            depth = nesting_depth(text, limits.max_html_depth)
            if depth > limits.max_html_depth:
                raise LoadError(
                    name,
                    f"its elements nest more than {limits.max_html_depth} deep "
                    f"(loaders.max_html_depth, the depth browsers stop at); parsing it would "
                    f"take time quadratic in the depth. Flatten it, or raise the limit",
                )
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
    return finish(document, text, blocks, limits, name)


def source_name(path: Path) -> str:
    """The name a file's documents carry: its resolved path, with bytes of a file name that
    are not UTF-8 written as ``\\xNN`` (Python holds them as surrogates, which no database
    stores). Stable for a given file, and the plain path for every UTF-8 name.

    >>> source_name(Path("/docs/caf\\udce9.txt"))
    '/docs/caf\\\\xe9.txt'
    """
    resolved = str(path.resolve())
    if resolved.isascii():
        return resolved
    return os.fsencode(resolved).decode("utf-8", "backslashreplace")


def finish(
    document: Document,
    text: str,
    blocks: list[Block],
    limits: LoaderSettings,
    where: str,
) -> LoadedDocument:
    """The one boundary every loaded document passes: text made safe for every consumer.

    Lone surrogates and NUL become U+FFFD (one code point each, so block offsets still hold)
    in the text, the blocks and the title; a text over ``limits.max_document_chars`` is a
    :class:`LoadError` naming ``where``.
    """
    if len(text) > limits.max_document_chars:
        raise text_limit_error(where, limits.max_document_chars)
    clean = normalize_text(text)
    if clean is not text:
        blocks = [b.model_copy(update={"text": clean[b.start : b.end]}) for b in blocks]
    if document.title is not None and (title := normalize_text(document.title)) != document.title:
        document = document.model_copy(update={"title": title})
    return LoadedDocument(document=document, text=clean, blocks=blocks)


def iter_jsonl(
    path: str | os.PathLike[str],
    *,
    source: str | None = None,
    on_error: Callable[[LoadError], None] | None = None,
    limits: LoaderSettings | None = None,
) -> Iterator[LoadedDocument]:
    """One :class:`LoadedDocument` per line of a JSONL corpus, streamed.

    Fits BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``, optional ``metadata``); ``id``
    and ``contents`` are accepted too. The title becomes a level-1 heading block before the
    text (so chunks carry it in ``heading_path``); the record's id is ``metadata["_id"]`` and
    the document's ``source`` is ``<file>#<_id>``. ``content_hash`` hashes the line's bytes.

    A bad line (not JSON, no id, no text, an id already used on an earlier line) raises
    :class:`LoadError` naming the line; pass ``on_error`` to be handed each error and go on
    with the next line instead.
    """
    for _, loaded in jsonl_records(path, source=source, on_error=on_error, limits=limits):
        yield loaded


def jsonl_records(
    path: str | os.PathLike[str],
    *,
    source: str | None = None,
    on_error: Callable[[LoadError], None] | None = None,
    limits: LoaderSettings | None = None,
) -> Iterator[tuple[int, LoadedDocument]]:
    """:func:`iter_jsonl` with each record's line number: ``(line, document)``."""
    limits = limits or get_settings().loaders
    file = Path(path)
    base = source if source is not None else source_name(file)
    try:
        stream = file.open("rb")
    except OSError as error:
        raise LoadError(base, f"the file cannot be read ({error.strerror or error})") from error
    first_line: dict[str, int] = {}
    with stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            where = f"{base}:{number}"
            try:
                loaded = _jsonl_record(raw, where, base, limits)
                record_id = loaded.document.metadata["_id"]
                if record_id in first_line:
                    raise LoadError(
                        where,
                        f"duplicate _id {record_id!r}: line {first_line[record_id]} has it "
                        f"too; the first record is kept, give this one its own id",
                    )
                first_line[record_id] = number
                yield number, loaded
            except LoadError as error:
                if on_error is None:
                    raise
                on_error(error)


def _jsonl_record(raw: bytes, where: str, base: str, limits: LoaderSettings) -> LoadedDocument:
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise LoadError(where, f"the line is not valid UTF-8 JSON ({error})") from error
    if not isinstance(record, dict):
        raise LoadError(where, f"expected a JSON object, got {type(record).__name__}")
    record_id = record.get("_id", record.get("id"))
    if record_id is None or record_id == "":
        raise LoadError(where, "the record has no '_id' (or 'id') field")
    if normalize_text(str(record_id)) != str(record_id):
        raise LoadError(where, "the record's '_id' holds a NUL or a lone UTF-16 surrogate")
    title = record.get("title") or ""
    body = record.get("text", record.get("contents"))
    if not isinstance(title, str) or not isinstance(body, str | None):
        raise LoadError(where, "'title' and 'text' must be strings")
    title, body = title.strip(), (body or "").strip()
    if not title and not body:
        raise LoadError(where, f"record {record_id!r} has neither 'title' nor 'text'")

    if len(title) + len(body) > limits.max_document_chars:
        raise text_limit_error(where, limits.max_document_chars)
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
    return finish(document, text, blocks, limits, where)


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
