"""Spans for every run, with OpenInference attributes, each opened in one line at its call site.

A CLI command, a Python call, a RAG answer, an agent run, a tuning or an eval run is one trace:
the outermost span is its root, and the model, retrieval, embedding and tool calls made inside
it are its children. Spans go to the local store (``lamina traces``) and, when configured, to an
OTLP collector (:func:`lamina.telemetry.tracing.otlp_endpoint`), which is how they reach Arize
Phoenix. Attributes follow the OpenInference semantic conventions so Phoenix shows the kind of
each span, its model, token counts, retrieved documents and tool calls:

- ``openinference.span.kind``: LLM, CHAIN, RETRIEVER, EMBEDDING, TOOL, AGENT, ...
- ``llm.model_name``, ``llm.provider``, ``llm.invocation_parameters``,
  ``llm.token_count.prompt|completion|total``, ``llm.cost.total``
- ``llm.input_messages.N.message.role|content`` and ``llm.output_messages.N.message.*``
  (lists flattened into indexed keys, as OpenTelemetry attributes cannot nest)
- ``retrieval.documents.N.document.id|score|content|metadata``
- ``tool.name``, ``tool.parameters``; ``embedding.model_name``; ``input.value``,
  ``output.value``

Content (prompts, completions, document text, tool arguments, inputs and outputs) is recorded
only when ``telemetry.capture_content`` is on; off, the default, spans keep what describes a
call without its text: kinds, model names, token counts, costs, document ids and scores, tool
names, sizes. Captured text has secrets redacted and long values cut.

    >>> with span("demo", "CHAIN", input="2+2?") as s:
    ...     s.output("4")
    >>> llm_attributes("local:smollm2", [Message.user("hi")], None, capture=True)["llm.provider"]
    'local'
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from lamina.settings import Settings, get_settings
from lamina.types import ChatOptions, Completion, Message, Usage

__all__ = [
    "KIND",
    "Kind",
    "RunSpan",
    "TracedEmbedder",
    "command",
    "current_trace_id",
    "documents_attributes",
    "embedding",
    "iterate",
    "llm",
    "llm_attributes",
    "openinference",
    "provider",
    "record_llm",
    "retriever",
    "span",
    "start",
    "tool_attributes",
]

KIND = "openinference.span.kind"
Kind = Literal[
    "LLM", "CHAIN", "RETRIEVER", "RERANKER", "EMBEDDING", "TOOL", "AGENT", "EVALUATOR", "PROMPT"
]
T = TypeVar("T")

_LONG = 4000  # characters of one captured value kept in a span
_MAX_ITEMS = 64  # messages, documents or texts recorded per span
_END = object()


def provider(settings: Settings) -> Any:
    """The tracer provider every run with these settings shares
    (:func:`lamina.telemetry.tracing.run_provider`); None when tracing is off
    (``OTEL_SDK_DISABLED``), absent (no opentelemetry) or has nowhere to send spans."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        from lamina.telemetry.tracing import run_provider
    except ImportError:  # no opentelemetry installed: the run's own result is the record
        return None
    return run_provider(settings)


def _tracer(settings: Settings) -> Any:
    """The OpenTelemetry tracer for these settings; None when tracing is off or absent."""
    found = provider(settings)
    return None if found is None else found.get_tracer("lamina")


def _text(value: Any) -> str:
    """A value as span text: strings as they are, anything else as JSON; secrets redacted,
    long text cut."""
    from lamina.telemetry.logs import redact  # only here: it needs opentelemetry

    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = redact(text)
    return text if len(text) <= _LONG else text[:_LONG] + "…"


def _scalar(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    return _text(value)


class RunSpan:
    """A span being recorded (or nothing, when tracing is off): set attributes on it.

    Content setters (:meth:`input`, :meth:`output`, the messages of :meth:`completion`, the
    text of :meth:`documents`) record only when content capture is on."""

    def __init__(self, otel: Any, capture: bool) -> None:
        self.otel = otel
        self.capture = capture
        self._token: Any = None

    @property
    def recording(self) -> bool:
        return self.otel is not None

    @property
    def trace_id(self) -> str | None:
        if self.otel is None:
            return None
        ctx = self.otel.get_span_context()
        return f"{ctx.trace_id:032x}" if ctx and ctx.trace_id else None

    def attributes(self, values: Mapping[str, Any]) -> None:
        """Set attributes by their full names (already conventional; None values skipped)."""
        if self.otel is not None:
            self.otel.set_attributes({k: _scalar(v) for k, v in values.items() if v is not None})

    def set(self, **values: Any) -> None:
        """Set ``lamina.<name>`` attributes: what Lamina adds beyond the conventions."""
        self.attributes({f"lamina.{k}": v for k, v in values.items()})

    def input(self, value: Any) -> None:
        if self.capture and value is not None:
            self.attributes(_value("input", value))

    def output(self, value: Any) -> None:
        if self.capture and value is not None:
            self.attributes(_value("output", value))

    def usage(self, usage: Usage) -> None:
        self.attributes(usage_attributes(usage))

    def completion(self, completion: Completion) -> Completion:
        """Record a model's reply (tokens, cost, finish reason; its text when capturing) and
        return it, so a call site can write ``return span.completion(model.chat(...))``."""
        self.attributes(completion_attributes(completion, capture=self.capture))
        return completion

    def documents(self, hits: Sequence[Any]) -> list[Any]:
        """Record retrieved chunks as ``retrieval.documents.N.document.*``; returns them."""
        self.attributes(documents_attributes(hits, capture=self.capture))
        return list(hits)

    def fail(self, exc: BaseException) -> None:
        """Mark the span failed. The exception's message and stacktrace are content (a parse
        error quotes what it parsed): recorded, redacted, only with capture; else the type."""
        if self.otel is not None:
            from opentelemetry.trace import Status, StatusCode

            kind = type(exc).__name__
            if self.capture:
                self.otel.record_exception(exc, {"exception.message": _text(str(exc))})
                self.otel.set_status(Status(StatusCode.ERROR, _text(f"{kind}: {exc}")[:500]))
            else:
                self.otel.add_event("exception", {"exception.type": kind})
                self.otel.set_status(Status(StatusCode.ERROR, kind))

    @contextmanager
    def current(self) -> Iterator[RunSpan]:
        """Make this span the parent of spans opened inside the block, without ending it."""
        if self.otel is None:
            yield self
            return
        from opentelemetry import context, trace

        token = context.attach(trace.set_span_in_context(self.otel))
        try:
            yield self
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self.fail(exc)
            raise
        finally:
            context.detach(token)

    def end(self) -> None:
        if self.otel is not None and self.otel.is_recording():
            self.otel.end()


def start(
    name: str,
    kind: Kind,
    *,
    settings: Settings | None = None,
    input: Any = None,
    attributes: Mapping[str, Any] | None = None,
    start_ns: int | None = None,
    **values: Any,
) -> RunSpan:
    """Start a span under the current one, without making it current: for work that yields
    (see :func:`iterate`). ``values`` become ``lamina.`` attributes."""
    settings = settings or get_settings()
    tracer = _tracer(settings)
    capture = settings.telemetry.capture_content
    if tracer is None:
        return RunSpan(None, capture)
    run = RunSpan(tracer.start_span(name, start_time=start_ns), capture)
    run.attributes({KIND: kind, **(attributes or {})})
    run.set(**values)
    run.input(input)
    return run


@contextmanager
def span(
    name: str,
    kind: Kind,
    *,
    settings: Settings | None = None,
    input: Any = None,
    attributes: Mapping[str, Any] | None = None,
    **values: Any,
) -> Iterator[RunSpan]:
    """A span around the block, current inside it, ended (with the error, if any) after it.

    >>> with span("rag.ask", "CHAIN", input="What is GGUF?", k=8) as s:
    ...     s.set(found=True)
    """
    run = start(name, kind, settings=settings, input=input, attributes=attributes, **values)
    try:
        with run.current():
            yield run
    finally:
        run.end()


def iterate(run: RunSpan, items: Iterator[T]) -> Iterator[T]:
    """Yield from ``items`` with ``run`` current while each item is produced, never across a
    ``yield`` (a context attached in one frame and detached in another breaks the consumer's);
    ``run`` ends when ``items`` is exhausted, fails or is abandoned."""
    try:
        while True:
            with run.current():
                item = next(items, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        run.end()


# -- LLM ------------------------------------------------------------------------------------------


def _message_attributes(prefix: str, i: int, message: Message) -> dict[str, Any]:
    base = f"{prefix}.{i}.message"
    out: dict[str, Any] = {f"{base}.role": message.role, f"{base}.content": _text(message.content)}
    if message.name:
        out[f"{base}.name"] = message.name
    if message.tool_call_id:
        out[f"{base}.tool_call_id"] = message.tool_call_id
    for j, call in enumerate(message.tool_calls):
        out[f"{base}.tool_calls.{j}.tool_call.id"] = call.id
        out[f"{base}.tool_calls.{j}.tool_call.function.name"] = call.name
        out[f"{base}.tool_calls.{j}.tool_call.function.arguments"] = _text(call.arguments)
    return out


def _value(prefix: str, value: Any) -> dict[str, Any]:
    mime = "text/plain" if isinstance(value, str) else "application/json"
    return {f"{prefix}.value": _text(value), f"{prefix}.mime_type": mime}


def llm_attributes(
    model: str, messages: Sequence[Message], options: ChatOptions | None, *, capture: bool
) -> dict[str, Any]:
    """What an LLM span says about the request: model, parameters, and (when capturing) the
    messages as ``llm.input_messages.N.message.*``.

    >>> attrs = llm_attributes("openai:gpt-4o-mini", [Message.user("2+2?")],
    ...                        ChatOptions(max_tokens=5), capture=False)
    >>> attrs["llm.model_name"], attrs["lamina.messages"], "input.value" in attrs
    ('gpt-4o-mini', 1, False)
    """
    provider, _, name = model.partition(":")
    out: dict[str, Any] = {
        KIND: "LLM",
        "llm.model_name": name or provider,
        "llm.provider": provider if name else None,
        "lamina.model": model,
        "lamina.messages": len(messages),
    }
    if options is not None:
        params = options.model_dump(
            include={"temperature", "top_p", "top_k", "max_tokens", "seed", "logprobs"},
            exclude_none=True,
        )
        params["tools"] = [t.name for t in options.tools] or None
        params["structured"] = options.json_schema is not None or None
        out["llm.invocation_parameters"] = json.dumps(
            {k: v for k, v in params.items() if v is not None}
        )
        for i, tool in enumerate(options.tools[:_MAX_ITEMS]):
            out[f"llm.tools.{i}.tool.name"] = tool.name
    if capture:
        for i, message in enumerate(messages[-_MAX_ITEMS:]):
            out.update(_message_attributes("llm.input_messages", i, message))
        out.update(_value("input", [m.model_dump(exclude_defaults=True) for m in messages]))
    return {k: v for k, v in out.items() if v is not None}


def usage_attributes(usage: Usage) -> dict[str, Any]:
    """Token counts and cost, as OpenInference names them.

    >>> usage_attributes(Usage(prompt_tokens=7, completion_tokens=3))["llm.token_count.total"]
    10
    """
    return {
        "llm.token_count.prompt": usage.prompt_tokens,
        "llm.token_count.completion": usage.completion_tokens,
        "llm.token_count.total": usage.prompt_tokens + usage.completion_tokens,
        "llm.cost.total": usage.cost_usd,
    }


def completion_attributes(completion: Completion, *, capture: bool) -> dict[str, Any]:
    out = {
        **usage_attributes(completion.usage),
        "lamina.finish_reason": completion.finish_reason,
        "lamina.cached": completion.cached,
        "lamina.tool_calls": len(completion.tool_calls) or None,
    }
    if capture:
        reply = Message(role="assistant", content=completion.text, tool_calls=completion.tool_calls)
        out.update(_message_attributes("llm.output_messages", 0, reply))
        out.update(_value("output", completion.text))
    return out


@contextmanager
def llm(
    model: str,
    messages: Sequence[Message],
    options: ChatOptions | None = None,
    *,
    settings: Settings | None = None,
    name: str = "llm.chat",
) -> Iterator[RunSpan]:
    """An LLM span around one model call; finish it with ``span.completion(result)``."""
    settings = settings or get_settings()
    attrs = llm_attributes(model, messages, options, capture=settings.telemetry.capture_content)
    with span(name, "LLM", settings=settings, attributes=attrs) as run:
        yield run


def record_llm(
    model: str,
    messages: Sequence[Message],
    options: ChatOptions | None,
    completion: Completion,
    *,
    started: float,
    settings: Settings | None = None,
    name: str = "llm.stream",
) -> None:
    """Record a finished streamed call as an LLM span that began at ``started`` (a
    ``time.perf_counter()`` reading). A stream yields to its consumer between deltas, so its
    span is written once it is complete rather than held open across those yields."""
    settings = settings or get_settings()
    attrs = llm_attributes(model, messages, options, capture=settings.telemetry.capture_content)
    begun = time.time_ns() - int((time.perf_counter() - started) * 1e9)
    run = start(name, "LLM", settings=settings, attributes=attrs, start_ns=begun)
    run.completion(completion)
    run.end()


# -- retrieval, embeddings, tools ----------------------------------------------------------------


def documents_attributes(hits: Sequence[Any], *, capture: bool) -> dict[str, Any]:
    """Retrieved chunks (:class:`~lamina.retrieval.store.base.Hit`) as
    ``retrieval.documents.N.document.*``: id and score always, the text and where it comes
    from when capturing."""
    out: dict[str, Any] = {"lamina.hits": len(hits)}
    for i, hit in enumerate(hits[:_MAX_ITEMS]):
        base = f"retrieval.documents.{i}.document"
        out[f"{base}.id"] = hit.chunk.chunk.id
        out[f"{base}.score"] = float(hit.score)
        if capture:
            out[f"{base}.content"] = _text(hit.text)
            meta: dict[str, Any] = {"source": hit.chunk.source, "title": hit.chunk.title}
            meta |= {"collection": hit.chunk.collection, "page": hit.chunk.chunk.page}
            out[f"{base}.metadata"] = _text({k: v for k, v in meta.items() if v is not None})
    return out


@contextmanager
def retriever(
    query: str, *, settings: Settings | None = None, name: str = "retrieve", **values: Any
) -> Iterator[RunSpan]:
    """A RETRIEVER span; record what it found with ``span.documents(hits)``."""
    with span(name, "RETRIEVER", settings=settings, input=query, **values) as run:
        yield run


@contextmanager
def embedding(
    model: str, texts: Sequence[str], *, settings: Settings | None = None, name: str = "embed"
) -> Iterator[RunSpan]:
    """An EMBEDDING span for one batch: the model, how many texts, and (when capturing) the
    first texts as ``embedding.embeddings.N.embedding.text``. Vectors are never recorded."""
    settings = settings or get_settings()
    attrs: dict[str, Any] = {"embedding.model_name": model, "lamina.texts": len(texts)}
    if settings.telemetry.capture_content:
        for i, text in enumerate(texts[:_MAX_ITEMS]):
            attrs[f"embedding.embeddings.{i}.embedding.text"] = _text(text)
    with span(name, "EMBEDDING", settings=settings, attributes=attrs) as run:
        yield run


def tool_attributes(name: str, arguments: Any, *, capture: bool) -> dict[str, Any]:
    """A TOOL span's attributes: ``tool.name`` always, the arguments when capturing.

    >>> tool_attributes("calculator", '{"expression": "2+2"}', capture=True)["tool.parameters"]
    '{"expression": "2+2"}'
    >>> "tool.parameters" in tool_attributes("calculator", "{}", capture=False)
    False
    """
    out: dict[str, Any] = {KIND: "TOOL", "tool.name": name}
    if capture:
        out["tool.parameters"] = _text(arguments)
        out.update(_value("input", arguments))
    return out


def openinference(
    kind: Kind, *, settings: Settings | None = None, input: Any = None, output: Any = None
) -> dict[str, Any]:
    """The kind, and input/output values when capturing, for a span opened elsewhere (the
    agents' and chains' own tracers): ``span.set_attributes(openinference("AGENT", ...))``.

    >>> openinference("AGENT", input="2+2?", settings=Settings())
    {'openinference.span.kind': 'AGENT'}
    """
    settings = settings or get_settings()
    out: dict[str, Any] = {KIND: kind}
    if settings.telemetry.capture_content:
        if input is not None:
            out.update(_value("input", input))
        if output is not None:
            out.update(_value("output", output))
    return out


def current_trace_id() -> str | None:
    """The trace id of the span current here (a CLI command's, a run's), None outside one."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


@contextmanager
def command(path: str, argv: Sequence[str] = ()) -> Iterator[RunSpan]:
    """The root span of one CLI command (``lamina ask``): everything the command does is a
    child of it, so each invocation is one trace. Settings that cannot be read give no span;
    the command itself reports them."""
    try:
        run = start(path, "CHAIN", input=" ".join(argv) or None, command=path)
    except Exception:  # invalid settings: `lamina doctor` must still run and say what is wrong
        run = RunSpan(None, False)
    try:
        with run.current():
            yield run
    finally:
        run.end()


class TracedEmbedder:
    """An embedder whose calls are EMBEDDING spans (``embed.query``, ``embed.documents``);
    everything else, optional methods included, is the wrapped embedder's.

    >>> from lamina.models.embeddings.hashing import HashEmbedder
    >>> traced = TracedEmbedder(HashEmbedder(), Settings())
    >>> traced.embed_query("hello").shape == (traced.dimension,)
    True
    """

    def __init__(self, inner: Any, settings: Settings | None = None) -> None:
        # Any Embedder (lamina.models.embeddings.base); telemetry imports nothing above it.
        self.inner = inner
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)

    @property
    def max_tokens(self) -> int:
        return int(self.inner.max_tokens)

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def embed_documents(self, texts: Sequence[str]) -> Any:
        with embedding(self.name, texts, settings=self.settings, name="embed.documents"):
            return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> Any:
        with embedding(self.name, [text], settings=self.settings, name="embed.query"):
            return self.inner.embed_query(text)
