"""Re-quantize a GGUF model with llama.cpp's own quantizer, once, cached by content.

Used to serve the bundled Q4_1 file in a format ggml repacks for its batched CPU kernels
(the ``local.batched_format`` setting; docs/benchmarks.md says what each format costs in
quality), by ``lamina tune``'s export, and by anything else that needs another quantization.
The result lands under ``$LAMINA_HOME/models`` with the source's SHA-256 and the target type
in its name, written to a temporary file and renamed, so a crash never leaves a half-written
model behind.

>>> ftype("q4_0") == ftype("Q4_0")
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lamina.errors import InvalidRequestError, ProviderError

__all__ = [
    "QUANT_TYPES",
    "cached_requantized",
    "file_sha256",
    "ftype",
    "quiet_llama",
    "requantize",
]


QUANT_TYPES = (
    "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_0", "q5_1", "q4_k_m", "q4_k_s", "q4_0", "q4_1",
    "iq4_nl", "iq4_xs",
)  # fmt: skip
"""Quantizations :func:`requantize` accepts (llama.cpp's ``LLAMA_FTYPE_MOSTLY_*`` names)."""


def ftype(name: str) -> int:
    """llama.cpp's file-type number for a quantization name such as 'q4_0'."""
    import llama_cpp

    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name.upper()}", None)
    if name.lower() not in QUANT_TYPES or value is None:
        raise InvalidRequestError(
            f"Unknown quantization {name!r}. Use one of: {', '.join(QUANT_TYPES)}."
        )
    return int(value)


_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def quiet_llama() -> Iterator[None]:
    """llama.cpp logs a line per tensor through llama-cpp-python's logger: errors only."""
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def requantize(
    source: Path,
    target: Path,
    quant: str,
    *,
    token_embedding_type: str | None = None,
    threads: int | None = None,
) -> Path:
    """Write ``source`` re-quantized to ``quant`` (e.g. 'q4_0') at ``target``, atomically.

    ``token_embedding_type`` (a ggml type name such as 'q4_0') overrides the type llama.cpp
    picks for the token embeddings, which small models tie to the output projection."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype(quant)
    params.allow_requantize = True
    params.nthread = threads or os.cpu_count() or 1
    if token_embedding_type is not None:
        # ggml_type values (GGML_TYPE_*), not ftypes: look them up by name.
        params.token_embedding_type = int(
            getattr(llama_cpp, f"GGML_TYPE_{token_embedding_type.upper()}")
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
        if status != 0 or not partial.is_file():
            raise ProviderError(
                f"llama.cpp could not quantize {source.name} to {quant} (status {status}). "
                f"Check that it is a valid GGUF model file."
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def cached_requantized(
    source: Path, quant: str, home: Path, *, token_embedding_type: str | None = None
) -> Path:
    """``source`` in ``quant``, converted on first use and kept under ``home/models``.

    Keyed by the source's SHA-256 (not its path), so an edited or replaced file is converted
    again and two copies of one file share the conversion.
    """
    folder = home / "models"
    stat = source.stat()
    hashes = folder / "sha256.json"
    with _lock:
        known: dict[str, str] = {}
        if hashes.is_file():
            try:
                known = json.loads(hashes.read_text())
            except (OSError, ValueError):
                known = {}
        stamp = f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        sha = known.get(stamp) or file_sha256(source)
        if known.get(stamp) != sha:
            known[stamp] = sha
            folder.mkdir(parents=True, exist_ok=True)
            tmp = hashes.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=1))
            tmp.replace(hashes)
        suffix = f"-emb-{token_embedding_type.lower()}" if token_embedding_type else ""
        target = folder / f"{source.stem}-{sha[:16]}-{quant.lower()}{suffix}.gguf"
        if not target.is_file():
            requantize(source, target, quant, token_embedding_type=token_embedding_type)
        return target
