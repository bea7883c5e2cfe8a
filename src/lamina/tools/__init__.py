"""Tools an agent (or you) can call: the ``Tool`` interface, the built-ins and their registry.

- :mod:`~lamina.tools.base`: ``Tool``, ``FunctionTool`` / ``@tool`` from a typed function,
  ``run_tool`` (validation, timeout, bounded output; failures become observations)
- :mod:`~lamina.tools.registry`: the ``lamina.tools`` entry-point group, ``get_tool``
- built-ins: ``calculator``, ``python`` (:mod:`~lamina.tools.sandbox`), ``sql``,
  ``search_documents``, ``http_get`` and ``web_search`` (:mod:`~lamina.tools.web`),
  ``remember`` / ``recall`` (:mod:`~lamina.tools.memory`)
"""

from lamina.tools.base import FunctionTool, Tool, ToolExample, ToolResult, run_tool, tool
from lamina.tools.errors import SandboxError, ToolError
from lamina.tools.registry import ToolContext, available, get_tool, get_tools, register

__all__ = [
    "FunctionTool",
    "SandboxError",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolExample",
    "ToolResult",
    "available",
    "get_tool",
    "get_tools",
    "register",
    "run_tool",
    "tool",
]
