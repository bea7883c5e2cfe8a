"""Blocks from PDF and DOCX files (private helpers of :mod:`loaders`).

Each function takes the file's bytes (read once by the caller, who hashes them) and returns the
title, the full text, the blocks and format metadata, or raises :class:`LoadError`.
"""

from __future__ import annotations

import io
import re
from typing import Any

from lamina.errors import MissingDependencyError
from lamina.retrieval._markup import text_blocks
from lamina.retrieval._text import BlockBuilder, clean_inline
from lamina.retrieval.documents import Block
from lamina.retrieval.errors import LoadError

_HEADING_STYLE = re.compile(r"heading\s*([1-9])$", re.IGNORECASE)

Extracted = tuple[str | None, str, list[Block], dict[str, Any]]


def pdf_blocks(data: bytes, source: str) -> Extracted:
    """Text of a PDF page by page: every block carries its 1-based ``page``.

    PDFs carry no reliable paragraph or heading structure, so blocks are the page text split on
    blank lines. A page that fails to extract is listed in ``metadata["failed_pages"]``; a PDF
    with no extractable text at all (a scan) is a :class:`LoadError`.
    """
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

    builder = BlockBuilder()
    failed: list[int] = []
    for number in range(1, page_count + 1):
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
    return title, text, blocks, metadata


def docx_blocks(data: bytes, source: str) -> Extracted:
    """Paragraphs and tables of a DOCX in document order; "Heading N" styles become headings.

    A "Title" paragraph is a level-0 heading (above every "Heading 1"). Each table row is one
    paragraph with its cells joined by `` | ``.
    """
    try:
        import docx
        from docx.table import Table
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("python-docx", "retrieval") from error

    try:
        document = docx.Document(io.BytesIO(data))
        builder = BlockBuilder()
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
