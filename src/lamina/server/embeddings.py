"""The embedding side of the server: which embedder answers a request.

Clients name an embedding model by id, among those the operator configured in
``server.embedding_models`` (id -> embedder spec, ``{"minilm": "minilm"}`` by default); an
empty ``model`` means the first. Anything else is 404 ``model_not_found``: a request never
makes the server open a path or call a URL it names.

The embedding models themselves live in ``lamina.models.embeddings`` (``get_embedder(spec)``,
looked up on first use). The server needs only their
:class:`~lamina.models.embeddings.DocumentEmbedder` side, which it calls ``Embedder``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable

from lamina.errors import ConfigError, ModelNotFoundError
from lamina.models.embeddings.base import DocumentEmbedder
from lamina.server.errors import (
    ModelUnavailableError,
    NotImplementedFeature,
    NotServedError,
    not_served_message,
)
from lamina.settings import Settings

__all__ = ["Embedder", "EmbedderCache"]

log = logging.getLogger("lamina.server")


#: What /v1/embeddings needs from an embedder (the name other server modules import).
Embedder = DocumentEmbedder


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
    """Embedders by request ``model`` field: given instances first, then the configured ids
    (``served``: id -> spec) built with ``get_embedder(spec)`` on first use.

    An empty ``model`` means the first given or configured id.
    """

    def __init__(
        self,
        given: dict[str, Embedder] | None = None,
        factory: Callable[[str], Embedder] | None = None,
        *,
        settings: Settings | None = None,
        served: dict[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._given: dict[str, Embedder] = dict(given or {})
        if served is None:
            served = dict(settings.server.embedding_models) if settings else {}
        self._specs = served
        self._cache: dict[str, Embedder] = {}
        self._factory = factory
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        return list(dict.fromkeys([*self._given, *self._specs]))

    def __call__(self, requested: str) -> tuple[str, Embedder]:
        """(served id, embedder) for a request's ``model`` field."""
        served_id = requested or next(iter(self.ids()), "")
        with self._lock:
            if served_id in self._given:
                return served_id, self._given[served_id]
            if served_id in self._cache:
                return served_id, self._cache[served_id]
        spec = self._specs.get(served_id)
        if spec is None:
            raise NotServedError(not_served_message(served_id, self.ids()))
        try:
            if self._factory is not None:
                embedder = self._factory(spec)
            else:
                embedder = _registry_factory()(spec, settings=self._settings)
        except (ConfigError, ModelNotFoundError, ValueError, KeyError) as exc:
            log.error("cannot load embedding model %r (%s): %s", served_id, spec, exc)
            raise ModelUnavailableError(served_id) from None
        with self._lock:
            return served_id, self._cache.setdefault(served_id, embedder)
