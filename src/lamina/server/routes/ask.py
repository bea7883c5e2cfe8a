"""POST /v1/ask: a grounded answer with verified citations over the caller's documents.

The answer is the object ``lamina ask --json`` prints, field for field (``answer``, ``found``,
``citations``, ``usage``, ``timings_ms``, ``query``, ``strategy``, ``sources``, ``run_id``), with
two differences of value, not of shape: a ``source`` is the uploaded file's name rather than a
path on the server, and every citation and source carries the ``document_id`` that
``GET /v1/documents/{id}/text`` reads.

With ``"stream": true`` the answer comes as server-sent events::

    event: token     data: {"text": "It ", "final": false}     (a draft: may be retracted)
    event: retry     data: {"reason": "..."}                   (drop every draft token so far)
    event: token     data: {"text": "Quoted answer [1]", "final": true}
    event: answer    data: {...the object above...}
    data: [DONE]

A ``final: false`` token belongs to a draft the generate strategy may still withdraw: a
``retry`` event means "discard every non-final token shown so far". The ``answer`` event is
always the last word; a client may simply replace whatever it showed with its ``answer``.
An error after the stream started is ``event: error`` with the usual error body.

Every answer is recorded as a run in the feedback store (kind ``ask``, meta ``via: http`` and
the tenant), and ``POST /v1/feedback`` rates it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from lamina.errors import ConfigError, InvalidRequestError, LaminaError
from lamina.feedback import FeedbackStore, feedback_path
from lamina.rag import Answer, RagConfig, RagPipeline, Retry, Token
from lamina.retrieval.documents import stable_id
from lamina.server.errors import RequestTimeout, error_body
from lamina.server.library import Library
from lamina.server.pool import Served
from lamina.server.routes._common import (
    Releasing,
    errors,
    http_status,
    in_thread,
    iterate,
    library_of,
    named_event,
)
from lamina.server.routes._deps import admit_key, server_state
from lamina.server.sse import DONE, EventStream
from lamina.server.state import ServerState
from lamina.server.tenancy import Tenant, tenant_of
from lamina.server.wire import AskRequest, AskResponse

router = APIRouter(tags=["ask"])
log = logging.getLogger("lamina.server")

_STREAM_DOC = {
    "description": "The answer (JSON), or with `stream: true` server-sent events: `token` "
    "(`text`, `final`), `retry` (`reason`), then `answer` (the JSON object), or `error`.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def answer_payload(answer: Answer, library: Library, run_id: str | None) -> dict[str, Any]:
    """The ``lamina ask --json`` object for an answer over the server's library."""
    payload = answer.public()
    citations: list[dict[str, Any]] = payload["citations"]  # type: ignore[assignment]
    for citation in citations:
        citation["document_id"] = stable_id(citation["source"])
        citation["source"] = library.display_name(citation["source"])
    payload["query"] = answer.query
    payload["strategy"] = answer.strategy
    payload["sources"] = [
        {
            "n": s.n,
            "source": library.display_name(s.source),
            "title": s.title,
            "page": s.page,
            "start": s.start,
            "end": s.end,
            "score": round(s.score, 4),
            "document_id": stable_id(s.source),
        }
        for s in answer.sources
    ]
    payload["run_id"] = run_id
    return payload


def _record(
    settings: Any, answer: Answer, payload: dict[str, Any], model: str, tenant: Tenant, name: str
) -> str | None:
    """Record the answer as a run for feedback; a store that cannot be written costs a log
    line, never the answer."""
    citations = [
        {k: c[k] for k in ("n", "source", "page", "start", "end", "quote")}
        for c in payload["citations"]
    ]
    meta = {
        "via": "http",
        "tenant": tenant.id,
        "key": tenant.key,
        "strategy": payload["strategy"],
        "found": answer.found,
        "collection": name,
    }
    try:
        return FeedbackStore(feedback_path(settings)).record(
            "ask", answer.question, answer.answer, model=model, citations=citations, meta=meta
        )
    except (OSError, sqlite3.Error, ConfigError) as exc:
        log.warning("answer not recorded for feedback: %s", exc)
        return None


class _Slot:
    """An admission slot released exactly once, by whoever finishes last."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.held = False

    async def take(self) -> None:
        await self.served.admission.acquire()
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.served.admission.release()


@router.post(
    "/v1/ask",
    summary="Answer a question from your documents, with verified citations",
    response_model=AskResponse,
    responses={200: _STREAM_DOC, **errors(400, 404, 413, 429, 503, 504)},
)
async def ask(
    body: AskRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    tenant = tenant_of(request)
    library = library_of(request)
    served = state.pool.get(body.model)
    request.state.model = served.id
    names = await asyncio.to_thread(library.scope, tenant, body.collection)
    if not await asyncio.to_thread(library.searchable, names):
        where = f"in the collection {body.collection!r}" if body.collection else "yet"
        raise InvalidRequestError(
            f"There are no documents to search {where}. Upload some with POST /v1/documents "
            f"(or the web UI at /) and wait for the job to finish."
        )
    pipeline = RagPipeline(
        library.view(names), served.model, config=RagConfig(strategy=body.strategy)
    )
    slot = _Slot(served)
    try:
        await slot.take()
    except LaminaError as exc:
        if http_status(exc) == 429:
            state.metrics.rejected.labels("overloaded").inc()
        raise
    deadline = asyncio.get_running_loop().time() + state.settings.server.request_timeout_s
    started = time.perf_counter()

    async def events() -> AsyncIterator[Token | Retry | Answer]:
        stream = pipeline.stream(body.question, list(body.history))
        source = in_thread(iterate(stream))
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    event = await asyncio.wait_for(anext(source, None), max(0.001, remaining))
                except TimeoutError:
                    raise RequestTimeout(
                        state.settings.server.request_timeout_s, "answering"
                    ) from None
                if event is None:
                    return
                yield event
        finally:
            await source.aclose()

    async def finish(answer: Answer) -> dict[str, Any]:
        slot.release()
        seconds = time.perf_counter() - started
        state.metrics.record_usage(key, served.id, answer.usage, seconds)
        limiter = state.limiters.get(key)
        if limiter is not None:
            limiter.charge(answer.usage.total_tokens)
        payload = answer_payload(answer, library, None)
        payload["run_id"] = await asyncio.to_thread(
            _record, state.settings, answer, payload, served.id, tenant, body.collection or ""
        )
        return payload

    if body.stream:
        return EventStream(Releasing(_sse(events(), finish), slot.release))
    try:
        answer: Answer | None = None
        async for event in events():
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return JSONResponse(await finish(answer))
    finally:
        slot.release()


async def _sse(
    events: AsyncIterator[Token | Retry | Answer],
    finish: Callable[[Answer], Any],
) -> AsyncIterator[str]:
    try:
        async for event in events:
            if isinstance(event, Token):
                yield named_event("token", {"text": event.text, "final": event.final})
            elif isinstance(event, Retry):
                yield named_event("retry", {"reason": event.reason})
            else:
                yield named_event("answer", await finish(event))
        yield DONE
    except LaminaError as exc:  # after the first event only the stream can say it
        code = getattr(exc, "code", None) or type(exc).__name__
        yield named_event("error", error_body(str(exc), http_status(exc), code))
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
