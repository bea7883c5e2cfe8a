"""Errors of the retrieval layer.

    LaminaError
    ├── LoadError        one source file could not be turned into text; report it and skip it
    └── IndexBusyError   another ingest is writing to the same index; wait for it, or retry

A loader never lets a third-party exception escape for a bad file: a corrupt or encrypted PDF,
an empty file, a binary file behind a text extension or text that is not UTF-8 all become a
:class:`LoadError` naming the file and the reason, so an ingest loop can log and go on.
"""

from __future__ import annotations

from lamina.errors import LaminaError

__all__ = ["IndexBusyError", "LoadError"]


class LoadError(LaminaError):
    """A source could not be loaded. ``source`` names it, ``reason`` says why and what to do.

    >>> str(LoadError("notes.txt", "the file is empty (0 bytes)"))
    "Cannot load 'notes.txt': the file is empty (0 bytes)"
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"Cannot load {source!r}: {reason}")
        self.source = source
        self.reason = reason


class IndexBusyError(LaminaError):
    """Two ingests into one index: the second one stops before writing anything.

    ``index`` names the index, ``holder`` says who has it (process, host, since when).
    """

    def __init__(self, index: str, holder: str, waited_s: float) -> None:
        waited = f" after waiting {waited_s:g} s" if waited_s > 0 else ""
        super().__init__(
            f"Another ingest is writing to the index {index}{waited} ({holder}). Nothing was "
            f"written. Wait for it to finish and run this ingest again, or give it time with "
            f"the setting retrieval.ingest_wait_s (LAMINA_RETRIEVAL__INGEST_WAIT_S)."
        )
        self.index = index
        self.holder = holder
