"""The input layer: prompts as data, few-shot examples, chain-of-thought, chaining, context.

- :mod:`~lamina.prompts.templates`: ``PromptTemplate`` (YAML header + Jinja body, strict
  rendering), ``PromptLibrary`` (user folders, ``$LAMINA_HOME/prompts``, the built-in ones),
  ``render`` for the package's own prompts (``rag/*``, ``evals/*``, ``apps/*``)
- :mod:`~lamina.prompts.fewshot`: example sets, selection by similarity or label balance,
  packing in a token budget, as chat turns or inline between XML delimiters
- :mod:`~lamina.prompts.reasoning`: chain-of-thought with the reasoning apart from the answer
  (JSON-constrained), self-consistency by vote
- :mod:`~lamina.prompts.chain`: typed steps composed with ``then``, each step traced
- :mod:`~lamina.prompts.context`: one builder for instructions, knowledge, memory and tools
  within a token budget, recording what it left out
- :mod:`~lamina.prompts.delimiters`: untrusted text inside XML-style blocks
"""

from lamina.prompts.chain import Chain, ChainResult, Step, StepRecord, generate
from lamina.prompts.context import Context, ContextBuilder, Omitted, Piece
from lamina.prompts.errors import OutputParseError, PromptError
from lamina.prompts.fewshot import (
    BalancedSelector,
    Example,
    SimilaritySelector,
    as_turns,
    as_xml,
    fit,
    load_examples,
)
from lamina.prompts.reasoning import Reasoned, think
from lamina.prompts.templates import (
    PromptLibrary,
    PromptTemplate,
    Variable,
    builtin_prompt,
    render,
    user_library,
)

__all__ = [
    "BalancedSelector",
    "Chain",
    "ChainResult",
    "Context",
    "ContextBuilder",
    "Example",
    "Omitted",
    "OutputParseError",
    "Piece",
    "PromptError",
    "PromptLibrary",
    "PromptTemplate",
    "Reasoned",
    "SimilaritySelector",
    "Step",
    "StepRecord",
    "Variable",
    "as_turns",
    "as_xml",
    "builtin_prompt",
    "fit",
    "generate",
    "load_examples",
    "render",
    "think",
    "user_library",
]
