"""Safe handling of uploaded files: a size limit, filenames that cannot escape a folder, and
a check of what a file *is* by its first bytes, not by its name alone.

>>> safe_filename("report 2024.pdf")
'report 2024.pdf'
>>> safe_filename("../../etc/passwd")  # doctest: +ELLIPSIS
Traceback (most recent call last):
lamina.errors.InvalidRequestError: Refused filename '../../etc/passwd': it contains a path...
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
from collections.abc import AsyncIterable
from pathlib import PurePath

from lamina.errors import InvalidRequestError

__all__ = ["UploadTooLargeError", "read_limited", "safe_filename", "sniff"]

_MAX_NAME = 255
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(10)
}


class UploadTooLargeError(InvalidRequestError):
    """An upload is larger than ``server.upload_limit_bytes`` (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The upload is larger than the limit of {limit} bytes. Split the file, or raise "
            f"server.upload_limit_bytes (LAMINA_SERVER__UPLOAD_LIMIT_BYTES)."
        )
        self.limit = limit


def safe_filename(name: str) -> str:
    """Return ``name`` if it is a plain file name, else raise InvalidRequestError.

    Refused, never rewritten: paths (``/`` or ``\\``), absolute or drive paths, ``.``/``..``,
    NUL and other control characters, hidden dot-files' empty stems, reserved Windows device
    names, and names over 255 UTF-8 bytes.
    """

    def refuse(why: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"Refused filename {name!r}: {why}. Send the bare file name, e.g. 'notes.md'."
        )

    normal = unicodedata.normalize("NFC", name)
    if not normal.strip():
        raise refuse("it is empty")
    if "/" in normal or "\\" in normal:
        raise refuse("it contains a path separator")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in normal):
        raise refuse("it contains a NUL or another control character")
    if normal in (".", "..") or normal.strip(". ") == "":
        raise refuse("it is not a file name")
    if len(normal) >= 2 and normal[1] == ":":
        raise refuse("it is a drive path")
    if normal.split(".")[0].upper().rstrip() in _WINDOWS_RESERVED:
        raise refuse("it is a reserved device name")
    try:
        size = len(normal.encode("utf-8"))
    except UnicodeEncodeError:
        raise refuse("it is not valid Unicode (a lone surrogate)") from None
    if size > _MAX_NAME:
        raise refuse(f"it is longer than {_MAX_NAME} bytes")
    return normal


#: Magic numbers of files that are not documents, with what they are.
_NOT_DOCUMENTS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP, WAV, AVI)"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.doc, .xls, .ppt)"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O binary"),
    (b"\x00asm", "a WebAssembly module"),
)
_TEXT_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def sniff(name: str, data: bytes) -> str:
    """What an upload is, from its bytes: ``"pdf"``, ``"docx"`` or ``"text"``; anything else,
    or content that contradicts the name, is an InvalidRequestError saying what it is.

    The extension picks the reader at ingest, so it must agree with the content: a PDF must
    start with ``%PDF-`` and be named .pdf, a .docx must be a zip holding
    ``word/document.xml``, and a text file must hold no NUL byte and no known binary header.

    >>> sniff("notes.md", b"# Notes")
    'text'
    >>> sniff("report.pdf", b"%PDF-1.7 ...")
    'pdf'
    >>> sniff("photo.txt", b"\\x89PNG\\r\\n\\x1a\\n...")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lamina.errors.InvalidRequestError: Refused 'photo.txt': it is a PNG image, not a document...
    """
    suffix = PurePath(name).suffix.lower()

    def refuse(why: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"Refused {name!r}: {why}. Upload PDF, DOCX, Markdown, HTML, JSONL or plain text."
        )

    if not data:
        raise refuse("the file is empty")
    if data[:1024].find(b"%PDF-") >= 0:
        if suffix != ".pdf":
            raise refuse("it is a PDF; name it .pdf")
        return "pdf"
    if suffix == ".pdf":
        raise refuse("it is named .pdf but is not a PDF (no %PDF- header)")
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        if suffix != ".docx":
            raise refuse("it is a zip archive; only .docx zips are documents")
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()  # the directory only
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise refuse(f"it is a damaged zip file ({exc})") from None
        if "word/document.xml" not in names:
            raise refuse("it is a zip archive but not a Word document (no word/document.xml)")
        return "docx"
    if suffix == ".docx":
        raise refuse("it is named .docx but is not a Word document (not a zip file)")
    for magic, what in _NOT_DOCUMENTS:
        if data.startswith(magic):
            raise refuse(f"it is {what}, not a document")
    head = data[:8192]
    nul = head.find(b"\x00")
    if nul >= 0 and not head.startswith(_TEXT_BOMS[1:]):  # UTF-16 text is full of NULs
        raise refuse(f"it holds a NUL byte at offset {nul}: a binary file")
    return "text"


async def read_limited(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """Read a streamed body, raising UploadTooLargeError as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body.extend(chunk)
        if len(body) > limit:
            raise UploadTooLargeError(limit)
    return bytes(body)
