"""Real small files for the loader tests: PDF (pypdf), DOCX (python-docx), and text formats."""

from __future__ import annotations

from pathlib import Path

import docx
from pypdf import PdfWriter
from pypdf.generic import (
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(
    path: Path,
    pages: list[list[str]],
    *,
    title: str | None = None,
    password: str | None = None,
) -> Path:
    """A real PDF whose page ``i`` shows ``pages[i]`` line by line in Helvetica."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
            NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
        }
    )
    font_ref = writer._add_object(font)
    for lines in pages:
        page = writer.add_blank_page(width=612, height=792)
        operations = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        for line in lines:
            operations.append(f"({_escape(line)}) Tj T*")
        operations.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(operations).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})}
        )
    if title:
        writer.add_metadata({"/Title": title})
    if password:
        writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    with path.open("wb") as stream_out:
        writer.write(stream_out)
    return path


def make_docx(path: Path, *, title: str | None = None) -> Path:
    """A real DOCX: a Title, Heading 1/2 sections, paragraphs and a table."""
    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_paragraph("Lamina Guide", style="Title")
    document.add_heading("Install", level=1)
    document.add_paragraph("Lamina runs on Python 3.11. It needs no GPU.")
    document.add_heading("From source", level=2)
    document.add_paragraph("Clone the repository. Then run pip install.")
    document.add_heading("Usage", level=1)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Command"
    table.cell(0, 1).text = "Effect"
    table.cell(1, 0).text = "lamina chat"
    table.cell(1, 1).text = "Opens a chat"
    document.add_paragraph("That is all.")
    document.save(str(path))
    return path
