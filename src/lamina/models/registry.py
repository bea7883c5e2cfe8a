"""One registry of model backends, filled from the ``lamina.models`` entry-point group.

The built-in backends are declared in Lamina's own ``pyproject.toml`` under that group, so a
third-party package adds a backend the same way::

    [project.entry-points."lamina.models"]
    mybackend = "my_package.module:MyModel"   # a class with from_spec(name, settings)

A model spec is ``BACKEND`` or ``BACKEND:NAME``: ``local``, ``local:/models/x.gguf``,
``openai:gpt-4o-mini``, ``anthropic:claude-3-5-haiku-latest``, ``scripted``. A bare path to a
``.gguf`` file means ``local:PATH``; a spec whose backend is named (``local-batched:PATH``)
keeps it.
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points
from typing import Protocol, cast

from lamina.errors import ConfigError
from lamina.models.base import ChatModel
from lamina.settings import Settings, get_settings

__all__ = ["BackendFactory", "backends", "get_model", "register"]

ENTRY_POINT_GROUP = "lamina.models"


class BackendFactory(Protocol):
    def from_spec(self, name: str | None, settings: Settings) -> ChatModel: ...

    def known_models(self, settings: Settings) -> list[str]: ...


_registered: dict[str, BackendFactory] = {}
_loaded = False
_lock = threading.Lock()


def register(backend: str, factory: BackendFactory) -> None:
    """Register a backend at run time (entry points are the usual way)."""
    with _lock:
        _registered[backend] = factory


def backends() -> dict[str, BackendFactory]:
    """Every backend: entry points first, then anything registered at run time."""
    global _loaded
    with _lock:
        if not _loaded:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                _registered.setdefault(ep.name, cast(BackendFactory, _LazyFactory(ep.name)))
            _loaded = True
        return dict(_registered)


class _LazyFactory:
    """Imports a backend's module only when it is used, so `lamina models` stays fast."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._factory: BackendFactory | None = None

    def _load(self) -> BackendFactory:
        if self._factory is None:
            (ep,) = entry_points(group=ENTRY_POINT_GROUP, name=self.name)
            self._factory = cast(BackendFactory, ep.load())
        return self._factory

    def from_spec(self, name: str | None, settings: Settings) -> ChatModel:
        return self._load().from_spec(name, settings)

    def known_models(self, settings: Settings) -> list[str]:
        load = getattr(self._load(), "known_models", None)
        return list(load(settings)) if load else []


def get_model(spec: str | None = None, *, settings: Settings | None = None) -> ChatModel:
    """The chat model for ``spec`` (default: the ``model`` setting, ``local`` out of the box).

    >>> get_model("scripted").chat("hello", temperature=0).text
    'hello'
    """
    settings = settings or get_settings()
    spec = spec or settings.model
    available = backends()
    if spec.endswith(".gguf") and spec.partition(":")[0] not in available:
        spec = f"local:{spec}"  # a bare path; ``local-batched:/m/x.gguf`` keeps its backend
    backend, _, name = spec.partition(":")
    if backend not in available:
        raise ConfigError(
            f"Unknown model backend {backend!r} in model spec {spec!r}. "
            f"Known backends: {', '.join(sorted(available))}. "
            f"Run `lamina models` to list them."
        )
    return available[backend].from_spec(name or None, settings)
