"""The one place Lamina reaches into llama-cpp-python's private API, checked by version.

The public ``llama_cpp.Llama`` serves one sequence. Continuous batching
(:mod:`lamina.models.scheduler`), logprobs of the token actually sampled, perplexity and a
JSON grammar handed to llama.cpp's own sampler need the objects underneath it, which
llama-cpp-python keeps private (``llama_cpp._internals``, ``Llama._model``/``Llama._ctx``,
``LlamaGrammar._grammar``). Private names may change in any release, so every access goes
through this module: :func:`problems` says which ones the installed version lacks (a test and
``lamina doctor`` call it), and :data:`TESTED` is the range of versions this was checked
against, so a version bump fails a test until someone has re-checked these few functions.

The C functions (``llama_cpp.llama_decode``, ``llama_sampler_*``, ...) are llama-cpp-python's
public low-level API and are used directly elsewhere.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "TESTED",
    "context_handle",
    "grammar_source",
    "llama_context",
    "llama_model",
    "load_model",
    "new_context",
    "problems",
    "quiet",
    "version_tested",
]

log = logging.getLogger(__name__)

TESTED = ((0, 3, 36), (0, 4, 0))
"""llama-cpp-python versions this module was checked against: ``[first, last)``."""


def _version(text: str) -> tuple[int, ...]:
    """
    >>> _version("0.3.36"), _version("0.4.0rc1")
    ((0, 3, 36), (0, 4, 0))
    """
    numbers = [int(n) for n in re.findall(r"\d+", text)[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


def version_tested(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed llama-cpp-python) is in :data:`TESTED`."""
    if version is None:
        import llama_cpp

        version = str(llama_cpp.__version__)
    first, last = TESTED
    return first <= _version(version) < last


def problems() -> list[str]:
    """The private names this module uses that the installed llama-cpp-python lacks.

    Empty on a working install; each entry names what is missing and the version to pin.
    """
    import llama_cpp
    import llama_cpp.llama_grammar as llama_grammar

    found: list[str] = []
    needs: dict[str, Callable[[], Any]] = {
        "llama_cpp._internals.LlamaModel": lambda: llama_cpp._internals.LlamaModel,
        "llama_cpp._internals.LlamaContext": lambda: llama_cpp._internals.LlamaContext,
        "llama_cpp._logger.set_verbose": _set_verbose,
        "LlamaGrammar._grammar/_root": lambda: grammar_source(
            llama_grammar.LlamaGrammar.from_string('root ::= "a"', verbose=False)
        ),
    }
    for name, get in needs.items():
        try:
            get()
        except (AttributeError, ImportError) as exc:
            found.append(f"{name} is missing ({exc})")
    for cls, methods in (
        (
            "LlamaModel",
            (
                "tokenize",
                "detokenize",
                "token_bos",
                "token_eos",
                "add_bos_token",
                "token_get_text",
                "metadata",
                "n_vocab",
            ),
        ),
        ("LlamaContext", ("close",)),
    ):
        owner = getattr(getattr(llama_cpp, "_internals", None), cls, None)
        found += [
            f"llama_cpp._internals.{cls}.{name} is missing"
            for name in methods
            if owner is not None and not hasattr(owner, name)
        ]
    # Attributes set in __init__ (reading them needs a loaded model): look for the assignment.
    for owner, attributes in (
        (getattr(llama_cpp, "Llama", None), ("_model", "_ctx")),
        (getattr(getattr(llama_cpp, "_internals", None), "LlamaContext", None), ("ctx",)),
        (getattr(getattr(llama_cpp, "_internals", None), "LlamaModel", None), ("vocab",)),
    ):
        if owner is None:
            continue
        try:
            source = inspect.getsource(owner.__init__)
        except (OSError, TypeError):
            continue  # no source to read (a frozen install): the runtime use will say
        found += [
            f"{owner.__name__}.{name} is no longer set by {owner.__name__}()"
            for name in attributes
            if f"self.{name} =" not in source and f"self.{name}:" not in source
        ]
    if found:
        first, last = TESTED
        found.append(
            f"llama-cpp-python {llama_cpp.__version__} changed its private API; Lamina was "
            f"checked with {'.'.join(map(str, first))} up to {'.'.join(map(str, last))} "
            f"(exclusive): reinstall with `make install` (it pins the version)."
        )
    return found


def _set_verbose() -> Any:
    from llama_cpp._logger import set_verbose

    return set_verbose


def quiet() -> None:
    """Silence llama.cpp's own logging (it writes to stderr from C)."""
    _set_verbose()(False)


def load_model(path: Path, n_gpu_layers: int = 0) -> Any:
    """llama.cpp's model (weights and vocabulary) without a context: ``_internals.LlamaModel``."""
    import llama_cpp
    from llama_cpp import _internals

    quiet()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    return _internals.LlamaModel(path_model=str(path), params=params, verbose=False)


def new_context(model: Any, params: Any) -> Any:
    """A context for ``model`` with C-level ``params`` (``llama_context_default_params()``);
    ``close()`` it when done."""
    from llama_cpp import _internals

    return _internals.LlamaContext(model=model, params=params, verbose=False)


def context_handle(context: Any) -> Any:
    """The ``llama_context *`` of a context from :func:`new_context`, for the C API."""
    return context.ctx


def llama_model(llama: Any) -> Any:
    """The ``_internals.LlamaModel`` of a loaded ``llama_cpp.Llama``."""
    return llama._model


def llama_context(llama: Any) -> Any:
    """The ``llama_context *`` of a loaded ``llama_cpp.Llama``, for the C API."""
    return llama._ctx.ctx


def grammar_source(grammar: Any) -> tuple[str, str]:
    """The GBNF text and root rule of a ``LlamaGrammar``, to build a C sampler from.

    >>> from llama_cpp.llama_grammar import LlamaGrammar
    >>> grammar_source(LlamaGrammar.from_string('root ::= "yes" | "no"', verbose=False))
    ('root ::= "yes" | "no"', 'root')
    """
    return grammar._grammar, grammar._root
