"""Reading bytes and text once, and building a full text from blocks (private helpers)."""

from __future__ import annotations

import codecs
import hashlib
import re
from functools import partial
from itertools import chain
from pathlib import Path

from lamina.retrieval.documents import Block, BlockKind
from lamina.retrieval.errors import LoadError

_READ_SIZE = 1 << 20
_SPACES = re.compile(r"[^\S\n]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")
#: Code points no encoder, tokenizer or database takes: lone UTF-16 surrogates (JSON can
#: spell them, "\\ud800"; a well-formed pair is decoded into one code point before this) and
#: NUL (PostgreSQL text refuses it).
_UNUSABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def normalize_text(text: str) -> str:
    """Replace lone surrogates and NUL by U+FFFD, one code point for one, so offsets hold.

    >>> normalize_text("caf\\u00e9 \\ud800 ok\\x00") == "caf\\u00e9 \\ufffd ok\\ufffd"
    True
    """
    if text.isascii() and "\x00" not in text:
        return text
    return _UNUSABLE.sub(REPLACEMENT, text)


def read_bytes(path: Path, source: str) -> tuple[bytes, str]:
    """The file's bytes and their SHA-256, for formats whose parser needs the whole file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LoadError(source, f"the file cannot be read ({error.strerror or error})") from error
    if not data:
        raise LoadError(source, "the file is empty (0 bytes)")
    return data, hashlib.sha256(data).hexdigest()


def read_text(path: Path, source: str, encoding: str) -> tuple[str, str, str]:
    """Decode a text file in one streaming pass: (text, sha256 of the bytes, encoding used).

    The bytes are hashed, checked for NUL (a binary file) and decoded as they are read, so a
    large file is held in memory once, as text. A UTF-8 or UTF-16 byte-order mark wins over
    ``encoding``; otherwise bytes that are not valid ``encoding`` raise :class:`LoadError` with
    the byte offset and the fix. Newlines come back normalised to ``\\n``.
    """
    digest = hashlib.sha256()
    parts: list[str] = []
    consumed = 0
    try:
        with path.open("rb") as stream:
            first = stream.read(_READ_SIZE)
            if not first:
                raise LoadError(source, "the file is empty (0 bytes)")
            encoding = _bom_encoding(first) or encoding
            try:
                decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
            except LookupError as error:
                raise LoadError(
                    source, f"unknown encoding {encoding!r}; pass a Python codec name"
                ) from error
            utf16 = encoding.lower().replace("-", "").replace("_", "").startswith("utf16")
            for block in chain((first,), iter(partial(stream.read, _READ_SIZE), b"")):
                digest.update(block)
                if not utf16 and b"\x00" in block:
                    at = consumed + block.index(b"\x00")
                    raise LoadError(
                        source,
                        f"this looks like a binary file (NUL byte at offset {at}), not text; "
                        "convert it to text or leave it out",
                    )
                pending = len(decoder.getstate()[0])
                try:
                    parts.append(decoder.decode(block))
                except UnicodeDecodeError as error:
                    at = consumed - pending + error.start
                    bad = error.object[error.start]
                    raise LoadError(
                        source,
                        f"the bytes are not valid {encoding} (byte 0x{bad:02x}"
                        f" at offset {at}); re-encode the file as UTF-8 (iconv -t utf-8) or pass "
                        "encoding= with its real encoding, e.g. 'cp1252'",
                    ) from error
                consumed += len(block)
            try:
                parts.append(decoder.decode(b"", final=True))
            except UnicodeDecodeError as error:
                raise LoadError(
                    source,
                    f"the bytes are not valid {encoding}: the file ends inside a multi-byte "
                    "character; re-encode the file as UTF-8 (iconv -t utf-8) or pass encoding= "
                    "with its real encoding, e.g. 'cp1252'",
                ) from error
    except OSError as error:
        raise LoadError(source, f"the file cannot be read ({error.strerror or error})") from error
    text = "".join(parts)
    del parts
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, digest.hexdigest(), encoding


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def clean_inline(text: str) -> str:
    """Collapse runs of spaces (not newlines), drop control characters, strip each line.

    >>> clean_inline("  a \\t b\\u00a0 c \\n  d  ")
    'a b c\\nd'
    """
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def split_paragraphs(text: str) -> list[str]:
    """Split on blank lines.

    >>> split_paragraphs("a\\nb\\n\\n \\nc")
    ['a\\nb', 'c']
    """
    return [part for part in (p.strip() for p in _BLANK_LINE.split(text)) if part]


def text_limit_error(source: str, limit: int) -> LoadError:
    return LoadError(
        source,
        f"it holds more than {limit} characters of text (loaders.max_document_chars); split "
        f"it, or raise the limit (LAMINA_LOADERS__MAX_DOCUMENT_CHARS)",
    )


class BlockBuilder:
    """Assemble a full text from blocks joined by blank lines, recording each block's span.

    With ``max_chars``, adding text past that many characters raises :class:`LoadError`
    naming ``source``: extraction stops there instead of holding an unbounded text.

    >>> builder = BlockBuilder()
    >>> builder.add("heading", " Title ", level=1)
    >>> builder.add("paragraph", "Body.")
    >>> text, blocks = builder.build()
    >>> text, [text[b.start : b.end] for b in blocks]
    ('Title\\n\\nBody.', ['Title', 'Body.'])
    """

    def __init__(self, *, max_chars: int | None = None, source: str = "") -> None:
        self._parts: list[str] = []
        self._position = 0
        self._blocks: list[Block] = []
        self._max_chars = max_chars
        self._source = source

    def add(
        self, kind: BlockKind, text: str, *, level: int | None = None, page: int | None = None
    ) -> None:
        text = text.strip()
        if not text:
            return
        if self._parts:
            self._parts.append("\n\n")
            self._position += 2
        start = self._position
        self._parts.append(text)
        self._position += len(text)
        if self._max_chars is not None and self._position > self._max_chars:
            raise text_limit_error(self._source, self._max_chars)
        self._blocks.append(
            Block(kind=kind, text=text, start=start, end=self._position, level=level, page=page)
        )

    def build(self) -> tuple[str, list[Block]]:
        return "".join(self._parts), self._blocks
