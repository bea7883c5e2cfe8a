"""The step tracer the agents and the chains share: spans whose steps record ``lamina.*``
attributes, opened under the current span, through the same provider as every other run
(:func:`lamina.telemetry.spans.provider`, one per trace store, collector and content
capture). Without OpenTelemetry, or with nowhere for spans to go, a span is a :class:`NoSpan`
and the run's own result is the only record.

    >>> from lamina.settings import Settings
    >>> with StepTracer(Settings(), "lamina.demo").span("demo.step", step="plan") as s:
    ...     s.set_attribute("lamina.ok", True)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lamina.settings import Settings
from lamina.telemetry.spans import KIND, provider

__all__ = ["NoSpan", "StepTracer", "attributes"]

_LONG = 2000  # characters of an argument, observation or step value kept in a span


class StepTracer:
    """Opens spans under the current one (so a chain inside an agent run nests in it);
    ``trace_id`` of a span it opened; ``enabled=False`` gives one whose spans record nothing."""

    def __init__(self, settings: Settings, name: str, *, enabled: bool = True) -> None:
        self._provider: Any = provider(settings) if enabled else None
        self._tracer: Any = None if self._provider is None else self._provider.get_tracer(name)

    @contextmanager
    def span(self, name: str, **attrs: Any) -> Iterator[Any]:
        if self._tracer is None:
            yield NoSpan()
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


class NoSpan:
    """The span of a tracer that records nothing: its setters do nothing."""

    def set_attributes(self, attrs: dict[str, Any]) -> None:
        pass

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def get_span_context(self) -> None:
        return None


def attributes(values: dict[str, Any]) -> dict[str, Any]:
    """Span attributes under ``lamina.``: scalars as they are, anything else as JSON, long
    text cut (spans are for reading runs, the run's result has everything).

    >>> attributes({"tool": "calc", "arguments": {"x": 1}, "skip": None})
    {'lamina.tool': 'calc', 'lamina.arguments': '{"x": 1}'}
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str | int | float | bool):
            value = json.dumps(value, default=str, ensure_ascii=False)
        if isinstance(value, str) and len(value) > _LONG:
            value = value[:_LONG] + "…"
        out[f"lamina.{key}"] = value
    return out
