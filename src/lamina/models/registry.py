"""The registry of model backends (a :class:`lamina.registry.Registry`), filled from the
``lamina.models`` entry-point group and :func:`register`.

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

from typing import Protocol

from lamina.models.base import ChatModel
from lamina.registry import Registry
from lamina.settings import Settings, get_settings

__all__ = ["MODELS", "BackendFactory", "backends", "get_model", "register"]


class BackendFactory(Protocol):
    def from_spec(self, name: str | None, settings: Settings) -> ChatModel: ...

    def known_models(self, settings: Settings) -> list[str]: ...


MODELS: Registry[BackendFactory] = Registry(
    "lamina.models",
    kind="model backend",
    plural="backends",
    hint="Run `lamina models` to list them.",
)


def register(backend: str, factory: BackendFactory) -> None:
    """Register a backend at run time (entry points are the usual way)."""
    MODELS.register(backend, factory)


def backends() -> dict[str, BackendFactory]:
    """Every backend by name; a backend's module is imported only when it is used, so
    listing them (`lamina models`) stays fast and a broken plugin fails only itself."""
    return {name: _LazyFactory(name) for name in MODELS.names()}


class _LazyFactory:
    def __init__(self, name: str) -> None:
        self.name = name

    def from_spec(self, name: str | None, settings: Settings) -> ChatModel:
        return MODELS.get(self.name).from_spec(name, settings)

    def known_models(self, settings: Settings) -> list[str]:
        load = getattr(MODELS.get(self.name), "known_models", None)
        return list(load(settings)) if load else []


def get_model(spec: str | None = None, *, settings: Settings | None = None) -> ChatModel:
    """The chat model for ``spec`` (default: the ``model`` setting, ``local`` out of the box).

    >>> get_model("scripted").chat("hello", temperature=0).text
    'hello'
    """
    settings = settings or get_settings()
    spec = spec or settings.model
    if spec.endswith(".gguf") and spec.partition(":")[0] not in MODELS:
        spec = f"local:{spec}"  # a bare path; ``local-batched:/m/x.gguf`` keeps its backend
    backend, _, name = spec.partition(":")
    factory = MODELS.get(backend, where=f" in model spec {spec!r}")
    return factory.from_spec(name or None, settings)
