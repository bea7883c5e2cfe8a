"""Errors of the tuning layer.

LaminaError
├── TuningError          a run cannot go on: no CUDA for --qlora, a resume that does not
│                        match its folder, an export the eval gate refused
└── InvalidRequestError
    └── DatasetError     a training file is wrong; the message names the line and the fix
"""

from __future__ import annotations

from collections.abc import Sequence

from lamina.errors import InvalidRequestError, LaminaError

__all__ = ["DatasetError", "TuningError"]


class TuningError(LaminaError):
    """A fine-tuning run cannot start, resume or export; the message says what to do."""


class DatasetError(InvalidRequestError):
    """A dataset is invalid. ``problems`` holds one ``"path:line: what is wrong"`` per fault.

    >>> str(DatasetError("data.jsonl", ["data.jsonl:3: 'messages' is missing"], 1))
    "data.jsonl has 1 invalid record:\\n  data.jsonl:3: 'messages' is missing"
    """

    def __init__(self, source: str, problems: Sequence[str], total: int) -> None:
        shown = "\n  ".join(problems)
        more = f"\n  ... and {total - len(problems)} more" if total > len(problems) else ""
        noun = "record" if total == 1 else "records"
        super().__init__(f"{source} has {total} invalid {noun}:\n  {shown}{more}")
        self.source = source
        self.problems = list(problems)
        self.total = total
