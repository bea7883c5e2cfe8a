"""The shipped HashEmbedder: the whole Embedder interface, registered as ``hash``; and the one
set of embedder protocols that every caller uses."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import lamina
from lamina.errors import ConfigError
from lamina.models.embeddings import (
    DocumentEmbedder,
    Embedder,
    TextEmbedder,
    get_embedder,
)
from lamina.models.embeddings.hashing import HashEmbedder
from lamina.settings import Settings
from lamina.testing import HashEmbedder as ShippedHashEmbedder


def test_is_the_whole_interface_and_both_narrow_ones() -> None:
    embedder = HashEmbedder()
    assert isinstance(embedder, Embedder)
    assert isinstance(embedder, TextEmbedder) and isinstance(embedder, DocumentEmbedder)
    assert (embedder.name, embedder.dimension, embedder.max_tokens) == ("hash", 64, 512)
    assert ShippedHashEmbedder is HashEmbedder


def test_registered_as_hash_with_an_optional_dimension(settings: Settings) -> None:
    assert isinstance(get_embedder("hash", settings), HashEmbedder)
    wide = get_embedder("hash:128", settings)
    assert (wide.name, wide.dimension, wide.embed_query("x").shape) == ("hash:128", 128, (128,))
    for bad in ("hash:wide", "hash:0", "hash:-3"):
        with pytest.raises(ConfigError, match=r"'hash:128', or just 'hash'"):
            get_embedder(bad, settings)


def test_rows_are_unit_length_deterministic_and_ordered() -> None:
    embedder = HashEmbedder()
    texts = ["Cats purr.", "Dogs bark loudly", "cats PURR", "!!!"]
    rows = embedder.embed_documents(texts)
    assert rows.shape == (4, 64) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows[:3], axis=1), 1.0, rtol=1e-6)
    assert not rows[3].any()  # no words, no direction
    np.testing.assert_array_equal(rows[0], rows[2])  # case and punctuation do not count
    np.testing.assert_array_equal(rows[1], embedder.embed_query("Dogs bark loudly"))
    assert embedder.embed_documents([]).shape == (0, 64)
    with pytest.raises(TypeError, match="list of texts"):
        embedder.embed_documents("one text")  # type: ignore[arg-type]


def test_tokens_are_words_and_the_rest_is_not_read() -> None:
    embedder = HashEmbedder(max_tokens=3)
    assert embedder.count_tokens("") == 0
    assert embedder.count_tokens("Don't panic, 42 times.") == 5
    assert embedder.count_tokens_batch(["a b", "", "c"]) == [2, 0, 1]
    head = embedder.embed_query("alpha beta gamma")
    np.testing.assert_array_equal(embedder.embed_query("alpha beta gamma delta epsilon"), head)


def test_delay_and_calls_stand_in_for_a_slow_model() -> None:
    embedder = HashEmbedder(0.0)
    embedder.embed_documents(["a"])
    embedder.embed_documents([])
    assert embedder.calls == 2
    with pytest.raises(ConfigError, match="dimension=0"):
        HashEmbedder(dimension=0)


def _embedder_protocols(root: Path) -> list[str]:
    """``module:Class`` of every Protocol in the package that declares an embed_* method."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(base) for base in node.bases}
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if "Protocol" in bases and methods & {"embed_documents", "embed_query"}:
                found.append(f"{path.relative_to(root).as_posix()}:{node.name}")
    return found


def test_the_embedder_protocols_are_defined_once() -> None:
    found = _embedder_protocols(Path(lamina.__file__).parent)
    assert set(found) == {  # Embedder itself inherits its embed_* methods
        "models/embeddings/base.py:TextEmbedder",
        "models/embeddings/base.py:DocumentEmbedder",
    }
