"""The tool registry: a :class:`~lamina.registry.Registry` over the ``lamina.tools`` group.

The built-in tools are declared in Lamina's own ``pyproject.toml`` under that group, so a
third-party package adds a tool the same way::

    [project.entry-points."lamina.tools"]
    weather = "my_package.tools:make_weather"   # make_weather(context) -> a Tool

The factory gets a :class:`ToolContext` (settings, the index to search, where long-term memory
lives) and returns a :class:`~lamina.tools.base.Tool`; a plain Tool object works too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.errors import ConfigError
from lamina.registry import Registry
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


_TOOLS: Registry[ToolFactory | Tool] = Registry(
    ENTRY_POINT_GROUP,
    kind="tool",
    plural="tools",
    hint="Run `lamina tools list` to see them with their descriptions.",
)


def register(name: str, factory: ToolFactory | Tool) -> None:
    """Register a tool (or a factory of one) at run time; entry points are the usual way."""
    _TOOLS.register(name, factory)


def available() -> list[str]:
    """Every registered tool name, sorted (imports no tool module)."""
    return _TOOLS.names()


def get_tool(name: str, context: ToolContext | None = None) -> Tool:
    """The tool registered as ``name``, built for ``context``."""
    entry = _TOOLS.get(name)
    tool = entry if isinstance(entry, Tool) else entry(context or ToolContext())
    if tool.name != name:
        raise ConfigError(f"The tool registered as {name!r} calls itself {tool.name!r}.")
    return tool


def get_tools(names: Sequence[str], context: ToolContext | None = None) -> list[Tool]:
    """Several tools by name, in order, built for one context."""
    context = context or ToolContext()
    return [get_tool(n.strip(), context) for n in names if n.strip()]
