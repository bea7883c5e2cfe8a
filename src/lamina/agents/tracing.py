"""Spans for agent runs, in the same trace store as ``lamina serve`` (``lamina traces``).

A run is one trace: ``agent.run`` at the root, an ``agent.model`` span per model call and an
``agent.tool`` span per tool call under it (crews add ``crew.run`` and ``crew.handoff``).
Without OpenTelemetry installed (the ``server`` extra) spans are skipped; the run result
still holds every step.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lamina.settings import Settings
from lamina.telemetry.spans import KIND

__all__ = ["RunTracer", "attributes"]

_providers: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()
_LONG = 2000  # characters of an argument or observation kept in a span


def _provider(settings: Settings) -> Any:
    key = (str(settings.traces_dir), settings.server.otlp_endpoint)
    with _lock:
        if key not in _providers:
            from lamina.telemetry.tracing import make_tracer_provider

            _providers[key] = make_tracer_provider(settings)
        return _providers[key]


class RunTracer:
    """Opens spans under the current one; ``trace_id`` of the innermost open span."""

    def __init__(self, settings: Settings) -> None:
        try:
            self._provider = _provider(settings)
            self._tracer = self._provider.get_tracer("lamina.agents")
        except ImportError:  # no opentelemetry: the run result is the only record
            self._provider = None
            self._tracer = None

    @contextmanager
    def span(self, name: str, **attrs: Any) -> Iterator[Any]:
        if self._tracer is None:
            yield _NoSpan()
            return
        # CHAIN unless the caller says otherwise (an agent run sets AGENT, a tool call TOOL):
        # every span gets an OpenInference kind, so Phoenix can lay the trace out.
        opened = {KIND: "CHAIN", **attributes(attrs)}
        with self._tracer.start_as_current_span(name, attributes=opened) as span:
            yield span

    def trace_id(self, span: Any) -> str | None:
        context = span.get_span_context() if hasattr(span, "get_span_context") else None
        return f"{context.trace_id:032x}" if context and context.trace_id else None

    def flush(self) -> None:
        if self._provider is not None:
            self._provider.force_flush()


class _NoSpan:
    def set_attributes(self, attrs: dict[str, Any]) -> None:
        pass

    def set_attribute(self, key: str, value: Any) -> None:
        pass


def attributes(values: dict[str, Any]) -> dict[str, Any]:
    """Span attributes under ``lamina.``: scalars as they are, anything else as JSON, long
    text cut (spans are for reading runs, the run result has everything).

    >>> attributes({"tool": "calc", "arguments": {"x": 1}, "skip": None})
    {'lamina.tool': 'calc', 'lamina.arguments': '{"x": 1}'}
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str | int | float | bool):
            value = json.dumps(value, default=str)
        if isinstance(value, str) and len(value) > _LONG:
            value = value[:_LONG] + "…"
        out[f"lamina.{key}"] = value
    return out
