"""The embedding side of the model layer: the :class:`Embedder` interface and its backends.

An embedder spec is ``BACKEND`` or ``BACKEND:NAME``:

- ``minilm`` (default): the bundled all-MiniLM-L6-v2 on onnxruntime, no torch at run time;
  ``minilm:int8`` is its int8-quantised, faster and approximate form.
- ``st:/path/to/model``: any local sentence-transformers folder (needs sentence-transformers).
- ``openai:MODEL`` or ``openai:MODEL@URL``: any OpenAI-compatible ``/v1/embeddings`` server.
- ``hash`` or ``hash:DIMENSION``: a hashed bag of words for tests (:mod:`.hashing`).

Backends come from the ``lamina.embedders`` entry-point group, where Lamina's own
``pyproject.toml`` declares the built-in ones, and from :func:`register_embedder` at run time
(:class:`lamina.registry.Registry`); a third-party package adds one the same way::

    [project.entry-points."lamina.embedders"]
    mine = "my_package.module:MyEmbedder"   # a class with from_spec(name, settings)

>>> embedder = get_embedder("minilm")   # cheap: the model loads on first use
>>> embedder.name, embedder.dimension, embedder.max_tokens
('minilm', 384, 256)
"""

from __future__ import annotations

from typing import Protocol

from lamina.models.embeddings.base import (
    DocumentEmbedder,
    Embedder,
    TextEmbedder,
    Vectors,
    normalize,
)
from lamina.registry import Registry
from lamina.settings import Settings, get_settings

__all__ = [
    "DEFAULT_EMBEDDER",
    "EMBEDDERS",
    "DocumentEmbedder",
    "Embedder",
    "EmbedderFactory",
    "TextEmbedder",
    "Vectors",
    "embedder_backends",
    "get_embedder",
    "normalize",
    "register_embedder",
]

#: The embedder of an index built without one, and of everything that needs "the" embedder.
DEFAULT_EMBEDDER = "minilm"


class EmbedderFactory(Protocol):
    def from_spec(self, name: str | None, settings: Settings) -> Embedder: ...


EMBEDDERS: Registry[EmbedderFactory] = Registry(
    "lamina.embedders", kind="embedder backend", plural="backends"
)


def register_embedder(backend: str, factory: EmbedderFactory) -> None:
    """Register a backend at run time (entry points are the usual way)."""
    EMBEDDERS.register(backend, factory)


def embedder_backends() -> list[str]:
    """The names of every known embedder backend."""
    return EMBEDDERS.names()


def get_embedder(spec: str | None = None, settings: Settings | None = None) -> Embedder:
    """The embedder for ``spec`` (default ``minilm``). Cheap: models load on first use."""
    settings = settings or get_settings()
    spec = spec or DEFAULT_EMBEDDER
    backend, _, name = spec.partition(":")
    factory = EMBEDDERS.get(backend, where=f" in spec {spec!r}")
    return factory.from_spec(name or None, settings)
