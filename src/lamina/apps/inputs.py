"""Reading what a user hands an app: files, folders, stdin text, as loaded documents.

Files go through the retrieval loaders (PDF, DOCX, HTML, Markdown, text), so an app sees the
same text, headings and pages that ``lamina ingest`` would; text read from stdin is read as
Markdown. A folder is walked (hidden files skipped); a file that cannot be loaded is reported
and skipped, and only a folder with nothing loadable is an error.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from lamina.errors import InvalidRequestError
from lamina.retrieval import LoadedDocument, LoadError, load
from lamina.retrieval.loaders import UNSUPPORTED_SUFFIXES

__all__ = ["load_inputs", "text_document"]

STDIN = "<stdin>"


def text_document(text: str, source: str = STDIN) -> LoadedDocument:
    """``text`` as a document named ``source`` (read as Markdown: ``#`` lines are headings).

    >>> doc = text_document("# Setup\\n\\nRun pip.")
    >>> doc.document.source, [b.kind for b in doc.blocks]
    ('<stdin>', ['heading', 'paragraph'])
    """
    if not text.strip():
        raise InvalidRequestError("The input is empty: there is no text to work on.")
    with tempfile.TemporaryDirectory(prefix="lamina-text-") as scratch:
        path = Path(scratch) / "input.md"
        path.write_text(text, encoding="utf-8")
        try:
            return load(path, source=source)
        except LoadError as exc:
            raise InvalidRequestError(f"Cannot read the input: {exc.reason}.") from None


def load_inputs(
    paths: Sequence[str | os.PathLike[str]],
    *,
    skipped: Callable[[str, str], None] | None = None,
) -> list[LoadedDocument]:
    """The documents in ``paths`` (files and folders), in a stable order.

    ``skipped(source, reason)`` hears about each file that could not be loaded.
    """
    documents: list[LoadedDocument] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidRequestError(f"No file or folder at {str(path)!r}.")
        files = [path] if path.is_file() else _walk(path)
        for file in files:
            try:
                documents.append(load(file))
            except LoadError as exc:
                if path.is_file():
                    raise InvalidRequestError(str(exc)) from None
                if skipped is not None:
                    skipped(exc.source, exc.reason)
    if not documents:
        raise InvalidRequestError(
            f"Nothing to read in {', '.join(map(str, paths))}: no file there could be loaded "
            f"(PDF, DOCX, HTML, Markdown or text)."
        )
    return documents


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or Path(name).suffix.lower() in UNSUPPORTED_SUFFIXES:
                continue
            if name.endswith((".jsonl", ".ndjson")):
                continue
            found.append(Path(root) / name)
    return found
