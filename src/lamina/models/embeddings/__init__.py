"""The embedding side of the model layer: the :class:`Embedder` interface and its backends.

An embedder spec is ``BACKEND`` or ``BACKEND:NAME``:

- ``minilm`` (default): the bundled all-MiniLM-L6-v2 on onnxruntime, no torch at run time;
  ``minilm:int8`` is its int8-quantised, faster and approximate form.
- ``st:/path/to/model``: any local sentence-transformers folder (needs sentence-transformers).
- ``openai:MODEL`` or ``openai:MODEL@URL``: any OpenAI-compatible ``/v1/embeddings`` server.

Backends come from the ``lamina.embedders`` entry-point group, then the built-in table below,
then :func:`register_embedder`, so a third-party package adds one the same way::

    [project.entry-points."lamina.embedders"]
    mine = "my_package.module:MyEmbedder"   # a class with from_spec(name, settings)

>>> embedder = get_embedder("minilm")   # cheap: the model loads on first use
>>> embedder.name, embedder.dimension, embedder.max_tokens
('minilm', 384, 256)
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Protocol, cast

from lamina.errors import ConfigError
from lamina.models.embeddings.base import Embedder, Vectors, normalize
from lamina.settings import Settings, get_settings

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "EmbedderFactory",
    "Vectors",
    "embedder_backends",
    "get_embedder",
    "normalize",
    "register_embedder",
]

ENTRY_POINT_GROUP = "lamina.embedders"
DEFAULT_EMBEDDER = "minilm"


class EmbedderFactory(Protocol):
    def from_spec(self, name: str | None, settings: Settings) -> Embedder: ...


_registered: dict[str, EmbedderFactory | str] = {}
_loaded = False
_lock = threading.Lock()


def register_embedder(backend: str, factory: EmbedderFactory) -> None:
    """Register a backend at run time (entry points are the usual way)."""
    with _lock:
        _registered[backend] = factory


def embedder_backends() -> list[str]:
    """The names of every known embedder backend."""
    _load()
    return sorted(_registered)


def get_embedder(spec: str | None = None, settings: Settings | None = None) -> Embedder:
    """The embedder for ``spec`` (default ``minilm``). Cheap: models load on first use."""
    settings = settings or get_settings()
    spec = spec or DEFAULT_EMBEDDER
    backend, _, name = spec.partition(":")
    _load()
    factory = _registered.get(backend)
    if factory is None:
        raise ConfigError(
            f"Unknown embedder backend {backend!r} in spec {spec!r}. "
            f"Known: {', '.join(sorted(_registered))}."
        )
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = cast(EmbedderFactory, getattr(importlib.import_module(module), attr))
    return factory.from_spec(name or None, settings)


def _load() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        # Built-in backends are declared in Lamina's pyproject.toml like any plugin's.
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _registered.setdefault(ep.name, ep.value)
        _loaded = True
