"""The input layer: prompts as data, few-shot examples, chain-of-thought, chaining, context.

- :mod:`~lamina.prompts.templates`: ``PromptTemplate`` (YAML header + Jinja body, strict
  rendering), ``PromptLibrary`` (user folders, ``$LAMINA_HOME/prompts``, the built-in ones),
  ``render`` for the package's own prompts (``rag/*``, ``evals/*``, ``apps/*``)
"""

from lamina.prompts.errors import PromptError
from lamina.prompts.templates import (
    PromptLibrary,
    PromptTemplate,
    Variable,
    builtin_prompt,
    render,
    user_library,
)

__all__ = [
    "PromptError",
    "PromptLibrary",
    "PromptTemplate",
    "Variable",
    "builtin_prompt",
    "render",
    "user_library",
]
