"""Tracing, metrics and structured logs, set up without any extra service.

- :mod:`~lamina.telemetry.spans`: one-line OpenInference spans for every run (CLI, Python API,
  RAG, agents, tuning, evals), in the same store as the server's.
- :mod:`~lamina.telemetry.tracers`: the step tracer the agents and the chains share.
- :mod:`~lamina.telemetry.tracing`: OpenTelemetry spans, exported over OTLP/HTTP when an
  endpoint is configured and appended as JSON lines under ``$LAMINA_HOME/traces`` either way.
- :mod:`~lamina.telemetry.metrics`: Prometheus metrics in a registry of their own (the
  ``server`` extra).
- :mod:`~lamina.telemetry.logs`: JSON log lines carrying the trace id, with secrets redacted.
- :mod:`~lamina.telemetry.experiments`: tuning and eval runs logged to Weights & Biases,
  offline unless configured otherwise.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "JsonFormatter",
    "JsonLinesSpanExporter",
    "Metrics",
    "configure_logging",
    "make_tracer_provider",
    "read_spans",
    "redact",
]

_WHERE = {
    "JsonFormatter": "lamina.telemetry.logs",
    "configure_logging": "lamina.telemetry.logs",
    "redact": "lamina.telemetry.logs",
    "Metrics": "lamina.telemetry.metrics",
    "JsonLinesSpanExporter": "lamina.telemetry.tracing",
    "make_tracer_provider": "lamina.telemetry.tracing",
    "read_spans": "lamina.telemetry.tracing",
}


def __getattr__(name: str) -> Any:
    # Lazily: the models import lamina.telemetry.spans, which must not pull prometheus_client
    # (the server extra) into every process.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'lamina.telemetry' has no attribute {name!r}")
