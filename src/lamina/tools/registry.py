"""One registry of tools, filled from the ``lamina.tools`` entry-point group.

The built-in tools are declared in Lamina's own ``pyproject.toml`` under that group, so a
third-party package adds a tool the same way::

    [project.entry-points."lamina.tools"]
    weather = "my_package.tools:make_weather"   # make_weather(context) -> a Tool

The factory gets a :class:`ToolContext` (settings, the index to search, where long-term memory
lives) and returns a :class:`~lamina.tools.base.Tool`; a plain Tool object works too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from lamina.errors import ConfigError
from lamina.settings import Settings, get_settings
from lamina.tools.base import Tool

__all__ = ["ToolContext", "ToolFactory", "available", "get_tool", "get_tools", "register"]

ENTRY_POINT_GROUP = "lamina.tools"
ToolFactory = Callable[["ToolContext"], Tool]


@dataclass
class ToolContext:
    """What a tool factory may need. ``index`` is the directory ``search_documents`` reads;
    ``memory`` the one long-term memory lives in (default ``$LAMINA_HOME/memory``)."""

    settings: Settings = field(default_factory=get_settings)
    index: Path | None = None
    memory: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_dir(self) -> Path:
        return self.memory or self.settings.home / "memory"


_registered: dict[str, ToolFactory | Tool] = {}
_loaded = False
_lock = threading.Lock()


def register(name: str, factory: ToolFactory | Tool) -> None:
    """Register a tool (or a factory of one) at run time; entry points are the usual way."""
    with _lock:
        _registered[name] = factory


def available() -> list[str]:
    """Every registered tool name, sorted."""
    return sorted(_entries())


def _entries() -> dict[str, ToolFactory | Tool]:
    global _loaded
    with _lock:
        if not _loaded:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                _registered.setdefault(ep.name, _Lazy(ep.name))
            _loaded = True
        return dict(_registered)


class _Lazy:
    """Imports a tool's module only when it is built, so listing tools stays fast."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, context: ToolContext) -> Tool:
        (ep,) = entry_points(group=ENTRY_POINT_GROUP, name=self.name)
        target = ep.load()
        return target if isinstance(target, Tool) else target(context)


def get_tool(name: str, context: ToolContext | None = None) -> Tool:
    """The tool registered as ``name``, built for ``context``."""
    entries = _entries()
    if name not in entries:
        raise ConfigError(
            f"Unknown tool {name!r}. Known tools: {', '.join(sorted(entries))}. "
            f"Run `lamina tools list` to see them with their descriptions."
        )
    entry = entries[name]
    tool = entry if isinstance(entry, Tool) else entry(context or ToolContext())
    if tool.name != name:
        raise ConfigError(f"The tool registered as {name!r} calls itself {tool.name!r}.")
    return tool


def get_tools(names: Sequence[str], context: ToolContext | None = None) -> list[Tool]:
    """Several tools by name, in order, built for one context."""
    context = context or ToolContext()
    return [get_tool(n.strip(), context) for n in names if n.strip()]
