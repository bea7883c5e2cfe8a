"""Errors of the prompt layer.

LaminaError
└── InvalidRequestError
    └── PromptError    a template that does not parse, or a render with a missing or
                       extra variable; the message names the template and the variable
"""

from __future__ import annotations

from lamina.errors import InvalidRequestError, LaminaError

__all__ = ["OutputParseError", "PromptError"]


class PromptError(InvalidRequestError):
    """A prompt template is malformed, unknown, or was rendered with the wrong variables.

    >>> str(PromptError("rag/answer", "missing variable 'question'"))
    "Prompt 'rag/answer': missing variable 'question'"
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"Prompt {name!r}: {problem}")
        self.name = name
        self.problem = problem


class OutputParseError(LaminaError):
    """A model's reply did not have the shape asked for (an API model ignoring the schema).

    Local models cannot cause it for JSON-schema replies: their grammar admits only valid
    JSON. Apps catch it where a fallback exists.
    """

    def __init__(self, model: str, problem: str) -> None:
        super().__init__(
            f"The reply of {model!r} could not be read: {problem}. Use a model that supports "
            f"structured output (the local models always do), or retry."
        )
        self.model = model
        self.problem = problem
