"""Errors of the retrieval layer.

    LaminaError
    └── LoadError    one source file could not be turned into text; report it and skip it

A loader never lets a third-party exception escape for a bad file: a corrupt or encrypted PDF,
an empty file, a binary file behind a text extension or text that is not UTF-8 all become a
:class:`LoadError` naming the file and the reason, so an ingest loop can log and go on.
"""

from __future__ import annotations

from lamina.errors import LaminaError

__all__ = ["LoadError"]


class LoadError(LaminaError):
    """A source could not be loaded. ``source`` names it, ``reason`` says why and what to do.

    >>> str(LoadError("notes.txt", "the file is empty (0 bytes)"))
    "Cannot load 'notes.txt': the file is empty (0 bytes)"
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"Cannot load {source!r}: {reason}")
        self.source = source
        self.reason = reason
