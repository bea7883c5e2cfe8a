"""Errors of the tool layer.

LaminaError
└── ToolError          a tool call failed: bad arguments, the tool's own failure, a
    │                  timeout; the agent shows the message to the model as an observation
    └── SandboxError   the python sandbox cannot isolate code on this machine (and
                       ``sandbox.allow_unsafe`` is off), or it failed to start
"""

from __future__ import annotations

from lamina.errors import LaminaError

__all__ = ["SandboxError", "ToolError"]


class ToolError(LaminaError):
    """A tool call failed in a way the model should hear about (the message is the observation)."""


class SandboxError(ToolError):
    """The sandbox cannot run code safely here; the message says why and what to change."""
