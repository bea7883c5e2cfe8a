"""The embedding side of the server: a tiny protocol and where embedders come from.

The embedding models themselves live in ``lamina.models.embeddings`` (``get_embedder(spec)``);
it is imported lazily, so the server runs (and answers 501 on /v1/embeddings) without it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from lamina.errors import ConfigError, ModelNotFoundError
from lamina.server.errors import NotImplementedFeature, NotServedError
from lamina.settings import Settings

__all__ = ["Embedder", "EmbedderCache"]


@runtime_checkable
class Embedder(Protocol):
    """What /v1/embeddings needs: ``embed_documents`` returns an (n, dimension) float array."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: list[str]) -> Any: ...


def _registry_factory() -> Callable[..., Embedder]:
    try:
        module = importlib.import_module("lamina.models.embeddings")
    except ImportError:
        module = None
    factory = getattr(module, "get_embedder", None)
    if factory is None:
        raise NotImplementedFeature(
            "No embedding backend is available in this installation "
            "(lamina.models.embeddings.get_embedder is missing), so /v1/embeddings cannot answer."
        )
    return factory  # type: ignore[no-any-return]


class EmbedderCache:
    """Embedders by request ``model`` field: given ones first, else ``get_embedder(spec)``.

    An empty ``model`` means get_embedder's default embedder.
    """

    def __init__(
        self,
        given: dict[str, Embedder] | None = None,
        factory: Callable[[str], Embedder] | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        self._settings = settings
        self._cache: dict[str, Embedder] = dict(given or {})
        self._factory = factory
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        return list(self._cache)

    def __call__(self, spec: str) -> Embedder:
        with self._lock:
            if spec in self._cache:
                return self._cache[spec]
        try:
            if self._factory is not None:
                embedder = self._factory(spec)
            else:
                embedder = _registry_factory()(spec or None, settings=self._settings)
        except (ConfigError, ModelNotFoundError, ValueError, KeyError) as exc:
            raise NotServedError(f"Embedding model {spec!r} is not available: {exc}") from None
        with self._lock:
            return self._cache.setdefault(spec, embedder)
