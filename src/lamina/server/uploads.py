"""Safe handling of uploaded files: a size limit and filenames that cannot escape a folder.

>>> safe_filename("report 2024.pdf")
'report 2024.pdf'
>>> safe_filename("../../etc/passwd")  # doctest: +ELLIPSIS
Traceback (most recent call last):
lamina.errors.InvalidRequestError: Refused filename '../../etc/passwd': it contains a path...
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterable

from lamina.errors import InvalidRequestError

__all__ = ["UploadTooLargeError", "read_limited", "safe_filename"]

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
    if len(normal.encode("utf-8")) > _MAX_NAME:
        raise refuse(f"it is longer than {_MAX_NAME} bytes")
    return normal


async def read_limited(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """Read a streamed body, raising UploadTooLargeError as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body.extend(chunk)
        if len(body) > limit:
            raise UploadTooLargeError(limit)
    return bytes(body)
