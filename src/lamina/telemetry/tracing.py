"""OpenTelemetry tracing with a local store: finished spans appended as JSON lines.

Each app gets its own ``TracerProvider`` (not the global one), so several apps can live in
one process, as they do in tests; every other run (CLI, Python API, agents, evals, tuning)
shares :func:`run_provider`. Spans go to one file per day,
``$LAMINA_HOME/traces/spans-YYYY-MM-DD.jsonl``, and to an OTLP/HTTP collector when one is
configured (:func:`otlp_endpoint`); nothing leaves the machine otherwise. ``read_spans`` reads
them back for ``GET /v1/traces`` and ``lamina traces``.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode

from lamina.errors import ConfigError
from lamina.settings import Settings

__all__ = [
    "ContentFreeExporter",
    "JsonLinesSpanExporter",
    "content_free",
    "content_free_events",
    "content_free_status",
    "make_tracer_provider",
    "otlp_endpoint",
    "read_spans",
    "run_provider",
    "span_record",
    "span_tree",
    "trace_lines",
    "trace_summaries",
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

    #: One lock for every exporter in the process: the server's and the runs' providers append
    #: to the same daily file, and two appends must not interleave.
    _lock = threading.Lock()

    def __init__(self, directory: Path) -> None:
        self.directory = directory

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


def otlp_endpoint(settings: Settings) -> str | None:
    """Where spans are exported over OTLP/HTTP, or None (the default: nothing is sent).

    ``server.otlp_endpoint`` (``LAMINA_SERVER__OTLP_ENDPOINT``) wins; else the standard
    OpenTelemetry variables: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as the full URL, or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` as the base URL that ``/v1/traces`` is appended to.
    ``OTEL_TRACES_EXPORTER=none`` turns the variables off. Only ``http/protobuf`` is spoken.

    >>> otlp_endpoint(Settings(server={"otlp_endpoint": "http://127.0.0.1:6006/v1/traces"}))
    'http://127.0.0.1:6006/v1/traces'
    """
    if settings.server.otlp_endpoint:
        return settings.server.otlp_endpoint
    env = os.environ
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not url and (base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()):
        url = base.rstrip("/") + "/v1/traces"
    if not url:
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    ) or "http/protobuf"
    if protocol.strip() != "http/protobuf":
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: Lamina exports traces over OTLP/HTTP "
            "only. Set it to 'http/protobuf' (or unset it) and point the endpoint at the "
            "collector's HTTP port (4318 by default; Phoenix serves it on 6006)."
        )
    return url


#: ``lamina.*`` text attributes that describe a run without holding its content: kept in an
#: export without content capture. Other ``lamina.*`` text (an agent's task and observations, a
#: chain step's input and output) stays in the local store only.
_METADATA = frozenset(
    [
        "model",
        "stop_reason",
        "tool",
        "role",
        "key",
        "finish_reason",
        "mode",
        "strategy",
        "answered_by",
        "command",
        "chain",
        "step",
        "agent",
        "session",
        "method",
        "out",
        "backend",
    ]
)
#: OpenInference attributes that hold content; the spans module sets them only with capture,
#: and an export without capture drops them whatever set them.
_CONTENT = ("input.", "output.", "llm.input_messages.", "llm.output_messages.", "tool.parameters")
_CONTENT_PARTS = (".document.content", ".document.metadata", ".embedding.text")


def content_free(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes fit to leave the machine without content capture: no prompt, completion,
    document or tool-argument text, and of Lamina's own text attributes only metadata.

    >>> content_free({"lamina.task": "my secret plan", "lamina.model": "local:x",
    ...               "lamina.steps": 3, "input.value": "hi", "llm.token_count.total": 9})
    {'lamina.model': 'local:x', 'lamina.steps': 3, 'llm.token_count.total': 9}
    """
    out = {}
    for key, value in attributes.items():
        if key.startswith(_CONTENT) or key.endswith(_CONTENT_PARTS):
            continue
        name = key.removeprefix("lamina.")
        if name != key and isinstance(value, str) and name not in _METADATA:
            continue
        out[key] = value
    return out


def content_free_events(events: Sequence[Event]) -> list[Event]:
    """Span events fit to leave the machine without content capture: an exception event keeps
    only ``exception.type`` (its message and stacktrace can quote content: a parse error
    quotes the text it could not parse), any other event only its numbers and flags.

    >>> [event] = content_free_events([Event("exception", {"exception.type": "ValueError",
    ...     "exception.message": "bad 'SSN 078-05-1120'", "exception.escaped": "False"})])
    >>> dict(event.attributes)
    {'exception.type': 'ValueError'}
    """
    out = []
    for event in events:
        attributes = dict(event.attributes or {})
        if event.name == "exception":
            kept = {k: v for k, v in attributes.items() if k == "exception.type"}
        else:
            kept = {k: v for k, v in content_free(attributes).items() if not isinstance(v, str)}
        out.append(Event(event.name, kept, event.timestamp))
    return out


def content_free_status(status: Status, events: Sequence[Event]) -> Status:
    """A span's status without its description's text: an error's description is the
    exception type name (``ValueError``), from the span's exception event, else nothing."""
    if status.status_code is not StatusCode.ERROR or not status.description:
        return status
    types = [
        str(event.attributes["exception.type"])
        for event in events
        if event.name == "exception" and event.attributes and "exception.type" in event.attributes
    ]
    return Status(StatusCode.ERROR, types[-1] if types else None)


class ContentFreeExporter(SpanExporter):
    """Exports spans through ``inner`` with :func:`content_free` attributes, events and status:
    what an OTLP collector receives while ``telemetry.capture_content`` is off."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export(
            [
                ReadableSpan(
                    name=s.name,
                    context=s.context,
                    parent=s.parent,
                    resource=s.resource,
                    attributes=content_free(s.attributes or {}),
                    events=content_free_events(s.events),
                    links=s.links,
                    kind=s.kind,
                    status=content_free_status(s.status, s.events),
                    start_time=s.start_time,
                    end_time=s.end_time,
                    instrumentation_scope=s.instrumentation_scope,
                )
                for s in spans
            ]
        )

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def make_tracer_provider(settings: Settings, *, batch_local: bool = True) -> TracerProvider:
    """A provider exporting to the local store and, when configured, to OTLP/HTTP.

    ``batch_local=False`` writes each span to the local store as it ends (no thread, nothing
    lost at exit), which suits short CLI runs."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "lamina"}), shutdown_on_exit=False
    )
    atexit.register(provider.shutdown)
    if settings.server.local_traces:
        exporter = JsonLinesSpanExporter(settings.traces_dir)
        local = (
            BatchSpanProcessor(exporter, schedule_delay_millis=1000)
            if batch_local
            else SimpleSpanProcessor(exporter)
        )
        provider.add_span_processor(local)
    if endpoint := otlp_endpoint(settings):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp: SpanExporter = OTLPSpanExporter(endpoint=endpoint)
        if settings.server.otlp_endpoint:
            _drop_env_headers(otlp)
        if not settings.telemetry.capture_content:
            otlp = ContentFreeExporter(otlp)
        provider.add_span_processor(BatchSpanProcessor(otlp))
    return provider


def _drop_env_headers(exporter: Any) -> None:
    """Remove the ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`` headers from an exporter sent to
    ``server.otlp_endpoint``: they are credentials for the collector the variables name, not
    for the one the setting names. The exporter merges the variables into its headers whatever
    ``headers=`` it is given, so they are taken out of its client afterwards (its private
    ``_client._headers``; tests/telemetry/test_export.py checks the headers on the wire)."""
    from opentelemetry.exporter.otlp.proto.http import _OTLP_HTTP_HEADERS
    from opentelemetry.util.re import parse_env_headers

    names = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
    keys = {
        k.lower() for n in names for k in parse_env_headers(os.environ.get(n, ""), liberal=True)
    }
    if not keys:
        return
    headers = getattr(getattr(exporter, "_client", None), "_headers", None)
    if not isinstance(headers, dict):
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_HEADERS is set while server.otlp_endpoint names the collector, "
            "and this opentelemetry-exporter-otlp-proto-http gives no way to keep those headers "
            "from it: unset the OTEL_EXPORTER_OTLP_*HEADERS variables, or name the collector "
            "with OTEL_EXPORTER_OTLP_ENDPOINT instead of the setting."
        )
    defaults = {key.lower(): value for key, value in _OTLP_HTTP_HEADERS.items()}
    for present in [k for k in headers if k.lower() in keys]:
        del headers[present]
    headers.update({k: v for k, v in defaults.items() if k in keys})


_run_providers: dict[tuple[str, bool, str | None, bool], TracerProvider | None] = {}
_run_lock = threading.Lock()
_KEEP = 8  # providers kept for different settings (tests make one per temporary home)


def run_provider(settings: Settings) -> TracerProvider | None:
    """The provider every run outside the server shares (spans, agents, chains), one per
    (trace store, endpoint, content capture): capture decides what its OTLP exporter lets
    through, so a provider made with capture on must not serve settings with it off. None
    when spans would go nowhere (no local store, no collector)."""
    endpoint = otlp_endpoint(settings)
    capture = settings.telemetry.capture_content
    key = (str(settings.traces_dir), settings.server.local_traces, endpoint, capture)
    with _run_lock:
        if key in _run_providers:
            return _run_providers[key]
        provider = None
        if settings.server.local_traces or endpoint:
            provider = make_tracer_provider(settings, batch_local=False)
        _run_providers[key] = provider
        while len(_run_providers) > _KEEP:
            oldest = _run_providers.pop(next(iter(_run_providers)))
            if oldest is not None:
                atexit.unregister(oldest.shutdown)
                oldest.shutdown()  # exports what it still holds
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


def _usage(attrs: dict[str, Any]) -> str:
    """``[LLM] 191+8 tokens $0.00001`` for a span with OpenInference kind, tokens and cost."""
    parts = []
    if kind := attrs.get("openinference.span.kind"):
        parts.append(f"[{kind}]")
    if "llm.token_count.prompt" in attrs:
        prompt, completion = attrs["llm.token_count.prompt"], attrs["llm.token_count.completion"]
        parts.append(f"{prompt}+{completion} tokens")
    if isinstance(cost := attrs.get("llm.cost.total"), int | float) and cost:
        parts.append(f"${cost:.6f}")
    return " ".join(parts)


def trace_lines(spans: list[dict[str, Any]], width: int = 100) -> list[str]:
    """One trace as an indented tree, one span a line: name, duration, its OpenInference kind,
    tokens and cost, then its ``lamina.`` attributes (long values cut to fit ``width``).

    >>> spans = [{"span_id": "a", "parent_id": None, "start": "1", "name": "agent.run",
    ...           "duration_ms": 12.5, "attributes": {"lamina.task": "2+2?"}},
    ...          {"span_id": "b", "parent_id": "a", "start": "2", "name": "llm.chat",
    ...           "duration_ms": 9, "attributes": {"openinference.span.kind": "LLM",
    ...           "llm.token_count.prompt": 40, "llm.token_count.completion": 2}}]
    >>> trace_lines(spans)
    ['agent.run  12.5 ms  task=2+2?', '  llm.chat  9 ms  [LLM] 40+2 tokens']
    """
    lines = []
    for depth, span in span_tree(spans):
        attributes = span.get("attributes") or {}
        attrs = " ".join(
            f"{key.removeprefix('lamina.')}={value}"
            for key, value in attributes.items()
            if key.startswith("lamina.")
        )
        line = f"{'  ' * depth}{span.get('name')}  {span.get('duration_ms', 0):g} ms"
        for part in (_usage(attributes), attrs):
            if part:
                line += f"  {part}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    return lines


def trace_summaries(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trace, newest last: its root span's name, start and duration, how many
    spans, the tokens and cost of its LLM spans, and whether any span failed.

    >>> rows = trace_summaries([
    ...     {"trace_id": "t", "span_id": "a", "parent_id": None, "name": "lamina ask",
    ...      "start": "1", "duration_ms": 30.0, "status": "UNSET", "attributes": {}},
    ...     {"trace_id": "t", "span_id": "b", "parent_id": "a", "name": "llm.chat",
    ...      "start": "2", "duration_ms": 20.0, "status": "UNSET", "attributes": {
    ...      "llm.token_count.prompt": 40, "llm.token_count.completion": 2,
    ...      "llm.cost.total": 0.0}}])
    >>> [(r["name"], r["spans"], r["tokens"], r["error"]) for r in rows]
    [('lamina ask', 2, 42, False)]
    """
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(str(span.get("trace_id")), []).append(span)
    rows = []
    for trace_id, members in traces.items():
        ids = {s.get("span_id") for s in members}
        roots = [s for s in members if s.get("parent_id") not in ids]
        root = min(roots or members, key=lambda s: str(s.get("start", "")))
        tokens, cost, priced = 0, 0.0, False
        for span in members:
            attrs = span.get("attributes") or {}
            tokens += int(attrs.get("llm.token_count.total") or 0) or int(
                attrs.get("llm.token_count.prompt") or 0
            ) + int(attrs.get("llm.token_count.completion") or 0)
            if isinstance(attrs.get("llm.cost.total"), int | float):
                cost, priced = cost + attrs["llm.cost.total"], True
        rows.append(
            {
                "trace_id": trace_id,
                "name": root.get("name"),
                "start": root.get("start"),
                "duration_ms": root.get("duration_ms"),
                "spans": len(members),
                "tokens": tokens,
                "cost_usd": cost if priced else None,
                "error": any(s.get("status") == "ERROR" for s in members),
            }
        )
    return sorted(rows, key=lambda r: str(r["start"]))
