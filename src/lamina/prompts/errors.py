"""Errors of the prompt layer.

LaminaError
└── InvalidRequestError
    └── PromptError    a template that does not parse, or a render with a missing or
                       extra variable; the message names the template and the variable
"""

from __future__ import annotations

from lamina.errors import InvalidRequestError

__all__ = ["PromptError"]


class PromptError(InvalidRequestError):
    """A prompt template is malformed, unknown, or was rendered with the wrong variables.

    >>> str(PromptError("rag/answer", "missing variable 'question'"))
    "Prompt 'rag/answer': missing variable 'question'"
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"Prompt {name!r}: {problem}")
        self.name = name
        self.problem = problem
