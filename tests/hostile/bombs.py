"""Hostile files, built in the test: decompression bombs, deep HTML, raw PDFs."""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import docx


def raw_pdf(pages: list[bytes], *, compress: bool = True, info: bytes = b"") -> bytes:
    """A minimal PDF written by hand: page ``i`` draws content stream ``pages[i]``.

    Each stream is Flate-compressed (at level 9, so a stream of spaces shrinks a
    thousandfold). ``info`` is the body of an Info dictionary (e.g. ``b"/Title (x)"``).
    """
    n = len(pages)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(n)), n),
    ]
    font = 3 + 2 * n
    for i, content in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * i, font)
        )
        data = zlib.compress(content, 9) if compress else content
        flate = b" /Filter /FlateDecode" if compress else b""
        objects.append(b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), flate, data))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    if info:
        objects.append(b"<< " + info + b" >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    trailer = b"/Size %d /Root 1 0 R" % (len(objects) + 1)
    if info:
        trailer += b" /Info %d 0 R" % len(objects)
    out += b"trailer\n<< %s >>\nstartxref\n%d\n%%%%EOF\n" % (trailer, xref)
    return bytes(out)


def text_page(text: str) -> bytes:
    return b"BT /F1 12 Tf 72 720 Td (%s) Tj ET\n" % text.encode("latin-1")


def docx_bomb(path: Path, expanded_bytes: int, *, text: str = "Hello bomb") -> Path:
    """A valid DOCX whose word/document.xml is followed by ``expanded_bytes`` NUL bytes,
    compressed at level 9 (1 GiB of them fits in about 1 MB)."""
    document = docx.Document()
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for item in source.infolist():
            if item.filename != "word/document.xml":
                out.writestr(item, source.read(item.filename))
        with out.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(source.read("word/document.xml"))
            chunk = b"\0" * (1 << 22)
            left = expanded_bytes
            while left > 0:
                member.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return path


def nested_html(depth: int) -> str:
    """``depth`` nested divs around one word: the shape that makes HTML parsing quadratic."""
    return "<html><body>" + "<div>x" * depth + "</div>" * depth + "</body></html>"
