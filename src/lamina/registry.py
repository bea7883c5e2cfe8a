"""One registry shape for everything pluggable: chat models, embedders, stores (and tools).

A :class:`Registry` maps names to entries (usually factories). Entries come from an
entry-point group, where Lamina declares its built-in ones in its own ``pyproject.toml``
exactly as a third-party package declares its own, and from :meth:`Registry.register` at run
time, which wins over an entry point of the same name. An entry point is imported only when
its entry is first asked for, so listing names stays fast and a broken plugin breaks only
itself.

>>> colours = Registry[str]("lamina.example-colours", kind="colour", plural="colours")
>>> colours.register("red", "#f00")
>>> colours.get("red"), colours.names(), "blue" in colours
('#f00', ['red'], False)
>>> colours.get("blue", where=" in the palette")
Traceback (most recent call last):
  ...
lamina.errors.ConfigError: Unknown colour 'blue' in the palette. Known colours: red.
"""

from __future__ import annotations

import threading
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar, cast

from lamina.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries from the entry-point ``group`` plus run-time registrations.

    ``kind`` and ``plural`` name the entries in the error for an unknown name ("Unknown
    model backend 'x'. Known backends: ..."), and ``hint`` ends it with what to do next.
    Thread-safe.
    """

    def __init__(self, group: str, *, kind: str, plural: str, hint: str = "") -> None:
        self.group = group
        self.kind = kind
        self.plural = plural
        self.hint = hint
        self._registered: dict[str, T] = {}
        self._loaded: dict[str, T] = {}
        self._points: dict[str, EntryPoint] | None = None
        self._lock = threading.Lock()

    def register(self, name: str, entry: T) -> None:
        """Add (or replace) ``name`` at run time; entry points are the usual way."""
        with self._lock:
            self._registered[name] = entry

    def names(self) -> list[str]:
        """Every known name, sorted; imports nothing."""
        with self._lock:
            return sorted(self._registered.keys() | self._entry_points().keys())

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._registered or name in self._entry_points()

    def get(self, name: str, *, where: str = "") -> T:
        """The entry registered as ``name``, its entry point imported on first use.

        An unknown name raises :class:`ConfigError` naming the known ones; ``where`` says
        where the name came from (" in model spec 'x:y'").
        """
        with self._lock:
            if name in self._registered:
                return self._registered[name]
            if name in self._loaded:
                return self._loaded[name]
            point = self._entry_points().get(name)
        if point is None:
            raise ConfigError(self.unknown(name, where=where))
        # Imported outside the lock: a slow import must not block other lookups, and the
        # import system already makes a second, concurrent load of the module wait for it.
        entry = cast(T, point.load())
        with self._lock:
            return self._loaded.setdefault(name, entry)

    def unknown(self, name: str, *, where: str = "") -> str:
        """The message for an unknown ``name``: what was asked, what exists, what to do."""
        known = ", ".join(self.names()) or "none"
        hint = f" {self.hint}" if self.hint else ""
        return f"Unknown {self.kind} {name!r}{where}. Known {self.plural}: {known}.{hint}"

    def _entry_points(self) -> dict[str, EntryPoint]:
        # Read once: scanning installed distributions costs milliseconds, lookups happen often.
        if self._points is None:
            points: dict[str, EntryPoint] = {}
            for point in entry_points(group=self.group):
                points.setdefault(point.name, point)  # two packages, one name: the first wins
            self._points = points
        return self._points
