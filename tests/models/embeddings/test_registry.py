"""Embedder specs: the registry, the st: backend and clear errors."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lamina.errors import ConfigError, MissingDependencyError, ModelNotFoundError
from lamina.models.embeddings import (
    Embedder,
    Vectors,
    embedder_backends,
    get_embedder,
    normalize,
    register_embedder,
)
from lamina.models.embeddings.local import minilm_folder
from lamina.models.embeddings.st import SentenceTransformerEmbedder
from lamina.settings import Settings
from tests.conftest import require


class _Fixed:
    """A third-party style backend: a class with from_spec."""

    name = "fixed"
    dimension = 2
    max_tokens = 8

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> _Fixed:
        return cls()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return normalize(np.ones((len(texts), 2)))

    def embed_query(self, text: str) -> Vectors:
        return self.embed_documents([text])[0]


def test_unknown_backend_names_the_spec_and_the_choices(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"'nope' in spec 'nope:x'.*minilm, openai, st"):
        get_embedder("nope:x", settings)


def test_register_a_backend(settings: Settings) -> None:
    register_embedder("fixed", _Fixed)
    assert "fixed" in embedder_backends()
    embedder = get_embedder("fixed", settings)
    assert isinstance(embedder, Embedder)
    assert embedder.embed_documents(["a", "b"]).shape == (2, 2)


def test_normalize_leaves_zero_rows() -> None:
    out = normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_st_needs_a_folder(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"st:/path/to"):
        get_embedder("st", settings)


def test_st_missing_folder(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"no-such-model"):
        get_embedder(f"st:{tmp_path / 'no-such-model'}", settings)


def test_st_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("sentence_transformers"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    embedder = SentenceTransformerEmbedder(minilm_folder())
    with pytest.raises(MissingDependencyError, match=r"pip install 'lamina\[st\]'"):
        embedder.embed_query("hi")


@pytest.mark.integration
def test_st_backend_end_to_end(settings: Settings) -> None:
    require("sentence_transformers", "the st: backend needs it: pip install 'lamina[st]'")
    st = get_embedder(f"st:{minilm_folder()}", settings)
    onnx = get_embedder("minilm", settings)
    assert st.dimension == 384 and st.max_tokens == 256
    assert st.count_tokens("hello world") == onnx.count_tokens("hello world") == 4
    texts = ["a small test", "another, longer sentence about proteins"]
    cosine = (st.embed_documents(texts) * onnx.embed_documents(texts)).sum(axis=1)
    assert cosine.min() > 0.9999
    assert st.embed_documents([]).shape == (0, 384)
