"""Tracing, metrics and structured logs, set up without any extra service.

- :mod:`~lamina.telemetry.tracing`: OpenTelemetry spans, exported over OTLP/HTTP when an
  endpoint is configured and appended as JSON lines under ``$LAMINA_HOME/traces`` either way.
- :mod:`~lamina.telemetry.metrics`: Prometheus metrics in a registry of their own.
- :mod:`~lamina.telemetry.logs`: JSON log lines carrying the trace id, with secrets redacted.
"""

from lamina.telemetry.logs import JsonFormatter, configure_logging, redact
from lamina.telemetry.metrics import Metrics
from lamina.telemetry.tracing import JsonLinesSpanExporter, make_tracer_provider, read_spans

__all__ = [
    "JsonFormatter",
    "JsonLinesSpanExporter",
    "Metrics",
    "configure_logging",
    "make_tracer_provider",
    "read_spans",
    "redact",
]
