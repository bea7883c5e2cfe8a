"""Spans for chains, reasoning and the apps, in Lamina's trace store (``lamina traces``).

The same shape the agents use (:mod:`lamina.agents.tracing`): one trace per run, one span per
step, attributes under ``lamina.``, long text cut. Without OpenTelemetry (the ``server``
extra) spans are skipped and the run's own result is the only record.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lamina.settings import Settings, get_settings
from lamina.telemetry.spans import KIND

__all__ = ["Tracer", "attributes"]

_providers: dict[tuple[str, str | None, bool], Any] = {}
_lock = threading.Lock()
_LONG = 2000  # characters of a value kept in a span


def _provider(settings: Settings) -> Any:
    key = (str(settings.traces_dir), settings.server.otlp_endpoint, settings.server.local_traces)
    with _lock:
        if key not in _providers:
            from lamina.telemetry.tracing import make_tracer_provider

            _providers[key] = make_tracer_provider(settings)
        return _providers[key]


class Tracer:
    """Opens spans under the current one (so a chain inside an agent run nests in it);
    ``enabled=False`` gives one whose spans record nothing."""

    def __init__(
        self,
        settings: Settings | None = None,
        name: str = "lamina.prompts",
        *,
        enabled: bool = True,
    ) -> None:
        self._provider: Any = None
        self._tracer: Any = None
        if not enabled:
            return
        try:
            self._provider = _provider(settings or get_settings())
            self._tracer = self._provider.get_tracer(name)
        except ImportError:  # no opentelemetry: the result object is the only record
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

    def get_span_context(self) -> None:
        return None


def attributes(values: dict[str, Any]) -> dict[str, Any]:
    """Span attributes under ``lamina.``: scalars as they are, anything else as JSON, long
    text cut.

    >>> attributes({"step": "plan", "output": {"n": 1}, "skip": None})
    {'lamina.step': 'plan', 'lamina.output': '{"n": 1}'}
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
