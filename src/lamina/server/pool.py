"""Which model serves a request: the models the operator configured, nothing else.

A request's ``model`` field is an id, never a spec: ``server.model_id`` ("lamina") names the
default model, and ``server.models`` maps more ids to specs. A request naming anything else
gets 404 ``model_not_found`` listing the served ids; no path is opened and no URL contacted on
a client's say-so, and the answer is the same whether or not a file of that name exists.

Models are built on first use and held in a bounded pool: at most
``server.max_loaded_models`` at once, and within ``server.model_memory_bytes`` (estimated by
the size of their weight files; half of physical memory when unset). When a new one would pass
either bound, the least recently used idle model goes (the default model stays); if every other
model is busy the request gets 429 and Retry-After instead of memory running out.

Three serving choices live here too:

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

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lamina.errors import ConfigError, LaminaError, OverloadedError
from lamina.models.base import ChatModel
from lamina.models.registry import get_model
from lamina.server.errors import ModelUnavailableError, NotServedError, not_served_message
from lamina.server.limits import Admission
from lamina.settings import Settings

__all__ = ["ModelPool", "Served", "batched_spec", "capacity", "served_specs", "weight_bytes"]

log = logging.getLogger("lamina.server")


@dataclass
class Served:
    """A model as served: the id clients see, the model, and its admission queue."""

    id: str
    model: ChatModel
    admission: Admission
    size: int = 0  # estimated bytes of weights

    @property
    def idle(self) -> bool:
        return self.admission.running == 0 and self.admission.waiting == 0


def served_specs(settings: Settings) -> dict[str, str]:
    """Served id -> spec: the default first, then ``server.models``.

    >>> from lamina.settings import Settings
    >>> served_specs(Settings(model="local", server={"models": {"big": "/m/big.gguf"}}))
    {'lamina': 'local-batched', 'big': '/m/big.gguf'}
    """
    cfg = settings.server
    if cfg.model_id in cfg.models:
        raise ConfigError(
            f"server.models names {cfg.model_id!r}, which is the id of the default model "
            f"(server.model_id). Give that entry another id, or set server.model instead."
        )
    return {cfg.model_id: cfg.model or batched_spec(settings.model), **cfg.models}


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
        self.specs = served_specs(settings)
        self.default_spec = self.specs[self.default_id]
        self.max_models = cfg.max_loaded_models
        self.budget = cfg.model_memory_bytes or _half_of_memory()
        model_settings = settings.model_copy(update={"max_retries": 0})
        self._factory = factory or (lambda spec: get_model(spec, settings=model_settings))
        # Instances given in code are always served and never evicted.
        self._given = {i: self._wrap(i, m) for i, m in (models or {}).items()}
        self._loaded: OrderedDict[str, Served] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def _wrap(self, served_id: str, model: ChatModel, size: int = 0) -> Served:
        cfg = self.settings.server
        concurrency = cfg.concurrency or capacity(model)
        admission = Admission(concurrency, cfg.queue_size, name=served_id)
        return Served(served_id, model, admission, size)

    def ids(self) -> list[str]:
        """What GET /v1/models lists: the default id, then the other configured ids."""
        return list(dict.fromkeys([self.default_id, *self.specs, *self._given]))

    def default(self) -> Served:
        return self.get(self.default_id)

    def get(self, requested: str) -> Served:
        """The served model for a request's ``model`` field (empty means the default)."""
        served_id = requested or self.default_id
        with self._lock:
            if served_id in self._given:
                return self._given[served_id]
            if served_id in self._loaded:
                self._loaded.move_to_end(served_id)
                return self._loaded[served_id]
        spec = self.specs.get(served_id)
        if spec is None:
            raise NotServedError(not_served_message(served_id, self.ids()))
        try:
            model = self._factory(spec)
        except LaminaError as exc:
            # The operator's configuration is at fault, not the client: details go to the log.
            log.error("cannot load model %r (%s): %s", served_id, spec, exc)
            raise ModelUnavailableError(served_id) from None
        served = self._wrap(served_id, model, weight_bytes(model))
        with self._lock:
            if served_id in self._loaded:  # another request built it meanwhile
                return self._loaded[served_id]
            evicted = self._make_room(served)
            self._loaded[served_id] = served
        for old in evicted:
            log.info("unloading model %r to make room for %r", old.id, served_id)
            _close_later(old.model)
        return served

    def _make_room(self, new: Served) -> list[Served]:
        """Evict idle models, least recently used first, until ``new`` fits both bounds."""
        evicted: list[Served] = []

        def over() -> bool:
            held = sum(s.size for s in self._loaded.values()) + new.size
            too_many = len(self._loaded) + 1 > self.max_models
            return too_many or (self.budget is not None and held > self.budget)

        for candidate in list(self._loaded.values()):
            if not over():
                break
            if candidate.id != self.default_id and candidate.idle:
                del self._loaded[candidate.id]
                evicted.append(candidate)
        others = [s for s in self._loaded.values() if s.id != self.default_id]
        if over() and others:
            # Everything evictable is busy: refuse now rather than run out of memory.
            for old in evicted:
                self._loaded[old.id] = old
            raise OverloadedError(
                f"Model {new.id!r} cannot be loaded while {[s.id for s in others]} are in use "
                f"(server.max_loaded_models={self.max_models}, server.model_memory_bytes="
                f"{self.budget}). Retry after the Retry-After delay.",
                status=429,
                retry_after=5.0,
            )
        if over():
            log.warning(
                "model %r (%d bytes) exceeds server.model_memory_bytes=%s; serving it anyway",
                new.id,
                new.size,
                self.budget,
            )
        return evicted

    def all(self) -> list[Served]:
        with self._lock:
            return [*self._given.values(), *self._loaded.values()]


def weight_bytes(model: object) -> int:
    """Estimated memory of a model: the size of its weight file, 0 for API models."""
    try:
        path = getattr(model, "path", None)
        return path.stat().st_size if isinstance(path, Path) else 0
    except (OSError, LaminaError):
        return 0


def _half_of_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return None


def _close_later(model: object) -> None:
    """Close an evicted model off the request path (a batched engine drains its thread)."""
    close = getattr(model, "close", None)
    if callable(close):
        threading.Thread(target=close, name="lamina-unload", daemon=True).start()


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
