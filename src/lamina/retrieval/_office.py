"""Blocks from PDF and DOCX files (private helpers of :mod:`loaders`).

Each function takes the file's bytes (read once by the caller, who hashes them) and returns the
title, the full text, the blocks and format metadata, or raises :class:`LoadError`.

Both formats compress, so a small file can expand to gigabytes. Before python-docx sees a
DOCX, its zip directory is checked: total uncompressed size (``loaders.max_uncompressed_bytes``)
and the ratio of each large member (``loaders.max_compression_ratio``). Python's zipfile stops
a member at its declared size, so the directory cannot lie about it. A PDF's streams are
capped one by one (``loaders.max_pdf_stream_bytes``, through pypdf's own limits) and its page
contents together (``loaders.max_uncompressed_bytes``). Extracted text stops at
``loaders.max_document_chars``. Whatever pypdf logs about a damaged file is kept for the
report instead of being printed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from lamina.errors import MissingDependencyError
from lamina.retrieval._markup import text_blocks
from lamina.retrieval._text import BlockBuilder, clean_inline
from lamina.retrieval.documents import Block
from lamina.retrieval.errors import LoadError
from lamina.settings import LoaderSettings

#: Members smaller than this may compress at any ratio (a page of repeated XML does).
_RATIO_FLOOR = 1 << 20
#: A DOCX has a few dozen parts; tens of thousands is a zip built to exhaust the reader.
_MAX_MEMBERS = 10_000

_HEADING_STYLE = re.compile(r"heading\s*([1-9])$", re.IGNORECASE)

Extracted = tuple[str | None, str, list[Block], dict[str, Any]]


def check_zip(data: bytes, source: str, limits: LoaderSettings, kind: str = "zip") -> None:
    """Refuse a zip whose members would expand past the limits, before anything is inflated.

    >>> import io, zipfile
    >>> buffer = io.BytesIO()
    >>> with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
    ...     z.writestr("word/document.xml", b"0" * (8 << 20))
    >>> check_zip(buffer.getvalue(), "bomb.docx", LoaderSettings())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lamina.retrieval.errors.LoadError: Cannot load 'bomb.docx': ... compressed 1028 times ...
    """
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise LoadError(
            source, f"not a readable {kind} file ({type(error).__name__}: {error})"
        ) from error
    if len(members) > _MAX_MEMBERS:
        raise LoadError(source, f"the file holds {len(members)} zip members; refusing it")
    total = 0
    for member in members:
        total += member.file_size
        if total > limits.max_uncompressed_bytes:
            raise LoadError(
                source,
                f"it would expand to more than {limits.max_uncompressed_bytes} bytes "
                f"(loaders.max_uncompressed_bytes), a decompression bomb or a very large "
                f"file; raise the limit (LAMINA_LOADERS__MAX_UNCOMPRESSED_BYTES) if you trust it",
            )
        ratio = member.file_size / max(1, member.compress_size)
        if member.file_size > _RATIO_FLOOR and ratio > limits.max_compression_ratio:
            raise LoadError(
                source,
                f"its part {member.filename!r} is compressed {ratio:.0f} times "
                f"({member.file_size} bytes in {member.compress_size}), more than "
                f"loaders.max_compression_ratio={limits.max_compression_ratio:g}: a "
                f"decompression bomb; raise the limit if you trust the file",
            )


@contextlib.contextmanager
def _pypdf_limits(limits: LoaderSettings) -> Iterator[list[str]]:
    """pypdf's per-stream output limits set to ours, and its log messages collected."""
    import pypdf

    cap = limits.max_pdf_stream_bytes
    apply = getattr(pypdf, "apply_configuration", None)  # pypdf >= 6.6; older: its defaults
    caps = (
        apply(
            **{
                name: cap
                for name in (
                    "maximum_declared_stream_length",
                    "array_based_stream_maximum_output_length",
                    "jbig2_maximum_output_length",
                    "lzw_maximum_output_length",
                    "run_length_maximum_output_length",
                    "zlib_maximum_output_length",
                    "brotli_maximum_output_length",
                )
                if hasattr(pypdf.Configuration, name)
            }
        )
        if apply is not None
        else contextlib.nullcontext()
    )
    said: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage().strip()
            if message and message not in said and len(said) < 5:
                said.append(message[:200])

    logger = logging.getLogger("pypdf")
    handler, propagate = Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # or Python's last-resort handler prints it on stderr
    try:
        with caps:
            yield said
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def pdf_blocks(data: bytes, source: str, limits: LoaderSettings | None = None) -> Extracted:
    """Text of a PDF page by page: every block carries its 1-based ``page``.

    PDFs carry no reliable paragraph or heading structure, so blocks are the page text split on
    blank lines. A page that fails to extract is listed in ``metadata["failed_pages"]``; a PDF
    with no extractable text at all (a scan) is a :class:`LoadError`. What pypdf warned about
    goes in ``metadata["warnings"]``, or in the reason of the LoadError.
    """
    limits = limits or LoaderSettings()
    with _pypdf_limits(limits) as said:
        try:
            return _pdf_blocks(data, source, limits, said)
        except LoadError as error:
            if not said:
                raise
            raise LoadError(source, f"{error.reason} (pypdf: {'; '.join(said)})") from error


def _pdf_blocks(data: bytes, source: str, limits: LoaderSettings, said: list[str]) -> Extracted:
    try:
        from pypdf import PasswordType, PdfReader
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("pypdf", "retrieval") from error

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                decrypted = reader.decrypt("")
            except Exception as error:
                raise LoadError(
                    source, f"the PDF is encrypted and cannot be opened here ({error})"
                ) from error
            if decrypted == PasswordType.NOT_DECRYPTED:
                raise LoadError(
                    source,
                    "the PDF is encrypted with a password; decrypt it first "
                    "(e.g. qpdf --decrypt --password=... in.pdf out.pdf)",
                )
        pages = reader.pages
        page_count = len(pages)
    except LoadError:
        raise
    except Exception as error:
        raise LoadError(source, f"not a readable PDF ({type(error).__name__}: {error})") from error

    # First the size of every page's decompressed contents (zlib in C: fast), so a bomb is
    # refused before any of it is parsed (pure Python: slow); pypdf keeps what it decoded.
    failed: list[int] = []
    expanded = 0
    for number in range(1, page_count + 1):
        try:
            contents = pages[number - 1].get_contents()
            expanded += len(contents.get_data()) if contents is not None else 0
        except Exception:
            failed.append(number)
            continue
        if expanded > limits.max_uncompressed_bytes:
            raise LoadError(
                source,
                f"its page contents expand to more than {limits.max_uncompressed_bytes} bytes "
                f"by page {number} of {page_count} (loaders.max_uncompressed_bytes): a "
                f"decompression bomb or a very large file; raise the limit if you trust it",
            )
    builder = BlockBuilder(max_chars=limits.max_document_chars, source=source)
    for number in range(1, page_count + 1):
        if number in failed:
            continue
        try:
            page_text = pages[number - 1].extract_text() or ""
        except Exception:
            failed.append(number)
            continue
        for block in text_blocks(clean_inline(page_text)):
            builder.add("paragraph", block.text, page=number)
    text, blocks = builder.build()
    if not blocks:
        why = "every page failed to extract" if failed else "it may be a scan that needs OCR"
        raise LoadError(source, f"the PDF has {page_count} page(s) but no extractable text ({why})")

    title: str | None = None
    try:
        title = (reader.metadata.title or "").strip() or None if reader.metadata else None
    except Exception:  # broken metadata is no reason to lose the text
        title = None
    metadata: dict[str, Any] = {"format": "pdf", "pages": page_count}
    if failed:
        metadata["failed_pages"] = failed
    if said:
        metadata["warnings"] = list(said)
    return title, text, blocks, metadata


def docx_blocks(data: bytes, source: str, limits: LoaderSettings | None = None) -> Extracted:
    """Paragraphs and tables of a DOCX in document order; "Heading N" styles become headings.

    A "Title" paragraph is a level-0 heading (above every "Heading 1"). Each table row is one
    paragraph with its cells joined by `` | ``.
    """
    try:
        import docx
        from docx.table import Table
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("python-docx", "retrieval") from error

    limits = limits or LoaderSettings()
    check_zip(data, source, limits, "DOCX")
    try:
        document = docx.Document(io.BytesIO(data))
        builder = BlockBuilder(max_chars=limits.max_document_chars, source=source)
        style_title: str | None = None
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells: list[str] = []
                    for cell in row.cells:
                        value = clean_inline(cell.text).replace("\n", " ")
                        if value and (not cells or cells[-1] != value):  # merged cells repeat
                            cells.append(value)
                    builder.add("paragraph", " | ".join(cells))
                continue
            text = clean_inline(item.text)
            style = item.style.name if item.style is not None else ""
            level = _docx_heading_level(style or "")
            if level is None:
                builder.add("paragraph", text)
            else:
                if level == 0 and style_title is None and text:
                    style_title = text
                builder.add("heading", text, level=level)
        title = (document.core_properties.title or "").strip() or style_title
    except LoadError:
        raise
    except Exception as error:
        raise LoadError(
            source, f"not a readable DOCX file ({type(error).__name__}: {error})"
        ) from error
    text, blocks = builder.build()
    if not blocks:
        raise LoadError(source, "the DOCX file holds no text")
    if title is None:
        title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    return title, text, blocks, {"format": "docx"}


def _docx_heading_level(style: str) -> int | None:
    """
    >>> [_docx_heading_level(s) for s in ("Heading 2", "Title", "Normal")]
    [2, 0, None]
    """
    if style.strip().lower() == "title":
        return 0
    match = _HEADING_STYLE.search(style.strip())
    return int(match.group(1)) if match else None
