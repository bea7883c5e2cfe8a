"""Which model serves a request: one cached ChatModel and one admission queue per spec.

The ``model`` field of a request is either the stable id of the default model
(``server.model_id``, "lamina" unless configured), one of the configured specs, or, when
``server.any_model`` is on, any spec ``get_model()`` understands. Behind a spec there is just a
ChatModel, so switching the default to another backend is a setting.

Three serving choices live here:

* Unless ``server.model`` names a spec, the default is the top-level ``model`` setting, with
  the one-sequence-at-a-time ``local`` backend served as ``local-batched`` (the same GGUF with
  continuous batching): a server has concurrent clients. ``--model local`` still serves
  ``local``.
* A model's admission concurrency is ``server.concurrency`` when set, else what the model can
  run at once: its ``slots`` (``local.slots`` for local-batched), else 1.
* Models the pool builds get ``max_retries=0``: a request never sleeps through a retry loop
  while it holds an admission slot. A full engine queue (OverloadedError) goes straight back as
  429 with Retry-After, other transient failures as their status, and the client retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lamina.errors import ConfigError
from lamina.models.base import ChatModel
from lamina.models.registry import get_model
from lamina.server.errors import NotServedError
from lamina.server.limits import Admission
from lamina.settings import Settings

__all__ = ["ModelPool", "Served", "batched_spec", "capacity"]


@dataclass
class Served:
    """A model as served: the id clients see, the model, and its admission queue."""

    id: str
    model: ChatModel
    admission: Admission


class ModelPool:
    def __init__(
        self,
        settings: Settings,
        models: Mapping[str, ChatModel] | None = None,
        *,
        factory: Callable[[str], ChatModel] | None = None,
    ) -> None:
        self.settings = settings
        cfg = settings.server
        self.default_id = cfg.model_id
        self.default_spec = cfg.model or batched_spec(settings.model)
        model_settings = settings.model_copy(update={"max_retries": 0})
        self._factory = factory or (lambda spec: get_model(spec, settings=model_settings))
        self._served: dict[str, Served] = {}
        self._lock = threading.Lock()
        for served_id, model in (models or {}).items():
            self._served[served_id] = self._wrap(served_id, model)

    def _wrap(self, served_id: str, model: ChatModel) -> Served:
        cfg = self.settings.server
        concurrency = cfg.concurrency or capacity(model)
        return Served(served_id, model, Admission(concurrency, cfg.queue_size, name=served_id))

    def ids(self) -> list[str]:
        """What GET /v1/models lists: the default id, configured specs, models in use."""
        listed = [self.default_id, *self.settings.server.models, *self._served]
        return list(dict.fromkeys(listed))

    def default(self) -> Served:
        return self.get(self.default_id)

    def get(self, requested: str) -> Served:
        """The served model for a request's ``model`` field (empty means the default)."""
        served_id = requested or self.default_id
        with self._lock:
            if served_id in self._served:
                return self._served[served_id]
        spec = self.default_spec if served_id == self.default_id else served_id
        configured = served_id == self.default_id or served_id in self.settings.server.models
        if not configured and not self.settings.server.any_model:
            raise NotServedError(
                f"Model {served_id!r} is not served here. Use one of {self.ids()} (GET /v1/models)."
            )
        try:
            model = self._factory(spec)
        except ConfigError as exc:
            raise NotServedError(f"Model {served_id!r} is not served here: {exc}") from None
        with self._lock:
            return self._served.setdefault(served_id, self._wrap(served_id, model))

    def all(self) -> list[Served]:
        with self._lock:
            return list(self._served.values())


def batched_spec(spec: str) -> str:
    """The spec a server runs for a configured model: ``local`` becomes ``local-batched``.

    >>> batched_spec("local"), batched_spec("local:/m/x.gguf"), batched_spec("/m/x.gguf")
    ('local-batched', 'local-batched:/m/x.gguf', 'local-batched:/m/x.gguf')
    >>> batched_spec("openai:gpt-4o-mini")
    'openai:gpt-4o-mini'
    """
    if spec.endswith(".gguf") and not spec.startswith(("local:", "local-batched:")):
        return f"local-batched:{spec}"
    backend, sep, name = spec.partition(":")
    return f"local-batched{sep}{name}" if backend == "local" else spec


def capacity(model: ChatModel) -> int:
    """How many requests a model generates at once: its ``slots`` if it has them, else 1."""
    slots = getattr(model, "slots", None)
    return slots if isinstance(slots, int) and slots > 0 else 1
