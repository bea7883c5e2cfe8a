"""Any local sentence-transformers model folder, run by sentence-transformers itself (torch).

Spec: ``st:/path/to/model``. The folder must exist on disk; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from lamina.errors import ConfigError, MissingDependencyError, ModelNotFoundError
from lamina.models.embeddings.base import Vectors, normalize
from lamina.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder; vectors are L2-normalised."""

    backend = "st"

    def __init__(self, folder: str | Path, *, batch_size: int = 32, device: str = "cpu") -> None:
        self.folder = Path(folder).expanduser()
        if (
            not (self.folder / "modules.json").is_file()
            and not (self.folder / "config.json").is_file()
        ):
            raise ModelNotFoundError(
                f"No sentence-transformers model in {str(self.folder)!r} (no modules.json or "
                "config.json there). Pass the folder that holds the model files: "
                "'st:/path/to/model'."
            )
        self.batch_size = batch_size
        self.device = device
        self._model: SentenceTransformer | None = None

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        if not name:
            raise ConfigError(
                "The st backend needs a model folder: 'st:/path/to/sentence-transformers-model'."
            )
        return cls(name)

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise MissingDependencyError("sentence-transformers", "st") from exc
            self._model = SentenceTransformer(
                str(self.folder), device=self.device, local_files_only=True
            )
        return self._model

    @property
    def name(self) -> str:
        return f"st:{self.folder}"

    @property
    def dimension(self) -> int:
        model = self.model
        # Newer sentence-transformers renamed the method; keep working with older ones.
        get = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(get() or 0)

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with special tokens, not truncated."""
        return len(self.model.tokenizer(text, truncation=False)["input_ids"])

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        """:meth:`count_tokens` of many texts in one tokenizer call."""
        ids = self.model.tokenizer(list(texts), truncation=False)["input_ids"]
        return [len(row) for row in ids]

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a list of texts; use embed_query for one")
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return normalize(vectors)

    def embed_query(self, text: str) -> Vectors:
        vector: Vectors = self.embed_documents([text])[0]
        return vector
