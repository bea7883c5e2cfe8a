"""OpenTelemetry tracing with a local store: finished spans appended as JSON lines.

Each process gets its own ``TracerProvider`` (not the global one), so several apps can live in
one process, as they do in tests. Spans go to one file per day,
``$LAMINA_HOME/traces/spans-YYYY-MM-DD.jsonl``, and to an OTLP/HTTP collector when
``server.otlp_endpoint`` is set. ``read_spans`` reads them back for ``GET /v1/traces`` and
``lamina traces``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from lamina.settings import Settings

__all__ = [
    "JsonLinesSpanExporter",
    "make_tracer_provider",
    "read_spans",
    "span_record",
    "span_tree",
    "trace_lines",
]


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A span as one flat JSON-able dict."""
    ctx = span.get_span_context()
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "start": datetime.fromtimestamp(start / 1e9, UTC).isoformat(),
        "duration_ms": round((end - start) / 1e6, 3),
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line to a per-day file in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_record(s), default=str) for s in spans]
        if not lines:
            return SpanExportResult.SUCCESS
        path = self.directory / f"spans-{datetime.now(UTC):%Y-%m-%d}.jsonl"
        try:
            with self._lock:
                self.directory.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as file:
                    file.write("\n".join(lines) + "\n")
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def make_tracer_provider(settings: Settings) -> TracerProvider:
    """A provider exporting to the local store and, when configured, to OTLP/HTTP."""
    provider = TracerProvider(resource=Resource.create({"service.name": "lamina"}))
    if settings.server.local_traces:
        exporter = JsonLinesSpanExporter(settings.traces_dir)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    if settings.server.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=settings.server.otlp_endpoint)
        provider.add_span_processor(BatchSpanProcessor(otlp))
    return provider


def read_spans(
    directory: Path, *, limit: int = 100, trace_id: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` spans (oldest first), optionally of one trace only.

    >>> read_spans(Path("/nonexistent"))
    []
    """
    found: deque[dict[str, Any]] = deque(maxlen=max(limit, 0))
    for path in sorted(directory.glob("spans-*.jsonl")):
        with path.open(encoding="utf-8") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                if trace_id is None or record.get("trace_id") == trace_id:
                    found.append(record)
    return list(found)


def span_tree(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The spans of one trace as (depth, span) in tree order: each parent before its
    children, siblings by start time. A span whose parent is missing is a root.

    >>> spans = [{"span_id": "b", "parent_id": "a", "start": "2"},
    ...          {"span_id": "a", "parent_id": None, "start": "1"}]
    >>> [(depth, s["span_id"]) for depth, s in span_tree(spans)]
    [(0, 'a'), (1, 'b')]
    """
    ids = {s.get("span_id") for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span.get("parent_id") if span.get("parent_id") in ids else None
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: str(s.get("start", ""))):
            ordered.append((depth, span))
            walk(span.get("span_id"), depth + 1)

    walk(None, 0)
    return ordered


def trace_lines(spans: list[dict[str, Any]], width: int = 100) -> list[str]:
    """One trace as an indented tree, one span a line: name, duration, then its ``lamina.``
    attributes (long values cut to fit ``width``).

    >>> spans = [{"span_id": "a", "parent_id": None, "start": "1", "name": "agent.run",
    ...           "duration_ms": 12.5, "attributes": {"lamina.task": "2+2?"}}]
    >>> trace_lines(spans)
    ['agent.run  12.5 ms  task=2+2?']
    """
    lines = []
    for depth, span in span_tree(spans):
        attrs = " ".join(
            f"{key.removeprefix('lamina.')}={value}"
            for key, value in (span.get("attributes") or {}).items()
            if key.startswith("lamina.")
        )
        line = f"{'  ' * depth}{span.get('name')}  {span.get('duration_ms', 0):g} ms"
        if attrs:
            line += f"  {attrs}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    return lines
