"""POST /v1/apps/{summarize,classify,extract,email/reply,email/draft,research}.

Each route calls the :mod:`lamina.apps` function of the same name and answers what the
``lamina`` command prints with ``--json`` (the schemas are in :mod:`lamina.server.apps_schemas`).
They are guarded like ``/v1/ask``: the caller's key and rate limit, a served model id only
(``model``), the body limit (``server.max_body_bytes``) and per-field limits, a slot at the
model's admission gate (429 when its queue is full) held until the work really ends, and the
``server.request_timeout_s`` deadline (504). Facts and sources come only from the collections
the caller may read, named by the uploaded files' names, never by server paths. ``research``
searches the caller's documents only: the web search of ``lamina research --web`` is not
offered over HTTP (a client could point the server at the network through it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request

from lamina.errors import InvalidRequestError
from lamina.prompts.errors import OutputParseError
from lamina.retrieval.documents import stable_id
from lamina.server.apps_schemas import (
    ClassifyRequest,
    ClassifyResponse,
    DraftRequest,
    EmailResponse,
    ExtractRequest,
    ExtractResponse,
    ReplyRequest,
    ResearchRequest,
    ResearchResponse,
    SummarizeRequest,
    SummarizeResponse,
)
from lamina.server.errors import RequestTimeout
from lamina.server.library import Library, ScopedIndex
from lamina.server.limits import Admission
from lamina.server.pool import Served
from lamina.server.routes._common import errors, library_of
from lamina.server.routes._deps import admit_key, server_state
from lamina.server.state import ServerState
from lamina.server.tenancy import tenant_of
from lamina.server.wire import ErrorBody
from lamina.types import Usage

router = APIRouter(prefix="/v1/apps", tags=["apps"])

T = TypeVar("T")
#: The statuses a model-calling app route can answer besides 200.
_ERRORS = {
    **errors(400, 404, 413, 429, 503, 504),
    422: {
        "model": ErrorBody,
        "description": "The model's replies did not have the shape asked for (for extract: "
        "did not validate against the schema, twice).",
    },
}


class _Cancelled(Exception):
    """The deadline passed: a long-running app stops at its next step."""


async def _run(
    state: ServerState,
    gate: Admission,
    work: Callable[[threading.Event], T],
    stage: str,
) -> T:
    """``work(cancelled)`` in a thread, behind ``gate``, within the request deadline.

    The slot is released when the thread ends, not when the deadline passes: a model call
    cannot be interrupted, and the gate must count the work that is really running.
    """
    timeout = state.settings.server.request_timeout_s
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout  # the wait for a slot counts, as on the chat routes
    try:
        async with asyncio.timeout_at(deadline):
            await gate.acquire()
    except TimeoutError:
        raise RequestTimeout(timeout, "waiting in the queue") from None
    cancelled = threading.Event()
    future = asyncio.ensure_future(asyncio.to_thread(work, cancelled))

    def done(finished: asyncio.Future[T]) -> None:
        gate.release()
        if not finished.cancelled():
            finished.exception()  # retrieved: an error after the deadline has no one to tell

    future.add_done_callback(done)
    try:
        return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
    except TimeoutError:
        cancelled.set()
        raise RequestTimeout(timeout, stage) from None
    except OutputParseError as exc:
        # Neither the client's fault nor the server's: this model could not give the shape
        # asked for (an API model ignoring structured output). The message names the
        # problems; another model, or a simpler schema, may succeed.
        raise HTTPException(422, detail=str(exc)) from None


def _served(state: ServerState, request: Request, model: str) -> Served:
    served = state.pool.get(model)  # an id that is not served: 400 naming the served ones
    request.state.model = served.id
    return served


def _account(state: ServerState, key: str, served: Served, usage: Usage, began: float) -> None:
    state.metrics.record_usage(key, served.id, usage, time.perf_counter() - began)
    limiter = state.limiters.get(key)
    if limiter is not None:
        limiter.charge(usage.total_tokens)


def _usage(usage: Usage) -> dict[str, Any]:
    return {**usage.model_dump(), "total_tokens": usage.total_tokens}


async def _documents(
    library: Library, request: Request, collection: str | None, what: str
) -> ScopedIndex:
    """The caller's collections as an index view; 404 for one that is not theirs, 400 when
    there is nothing to search."""
    names = await asyncio.to_thread(library.scope, tenant_of(request), collection)
    if not await asyncio.to_thread(library.searchable, names):
        where = f"in the collection {collection!r}" if collection else "yet"
        raise InvalidRequestError(
            f"There are no documents to {what} {where}. Upload some with POST /v1/documents "
            f"and wait for the job to finish."
        )
    return library.view(names)


def _citation(citation: Any, library: Library) -> dict[str, Any]:
    return {
        "n": citation.n,
        "source": library.display_name(citation.source),
        "page": citation.page,
        "start": citation.start,
        "end": citation.end,
        "quote": citation.quote,
        "verified": citation.verified,
        "document_id": stable_id(citation.source),
    }


# -- summarize ------------------------------------------------------------------------------


@router.post(
    "/summarize",
    summary="Summarise a text of any size; each point names the sections it came from",
    response_model=SummarizeResponse,
    responses=_ERRORS,
)
async def summarize(
    body: SummarizeRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    from lamina.apps import summarize as run
    from lamina.apps.inputs import text_document

    served = _served(state, request, body.model)
    document = text_document(body.text, body.title or "<input>")
    began = time.perf_counter()

    def work(cancelled: threading.Event) -> Any:
        def progress(done: int, total: int) -> None:
            if cancelled.is_set():
                raise _Cancelled()

        return run(
            document, model=served.model, length=body.length, style=body.style, progress=progress
        )

    summary = await _run(state, served.admission, work, "summarising")
    _account(state, key, served, summary.usage, began)
    return {**summary.model_dump(), "usage": _usage(summary.usage), "model": served.id}


# -- classify -------------------------------------------------------------------------------


@router.post(
    "/classify",
    summary="Label a text with one of the labels, with a confidence",
    response_model=ClassifyResponse,
    responses=_ERRORS,
)
async def classify(
    body: ClassifyRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    from lamina.apps.classify import Classifier, check_labels
    from lamina.prompts.fewshot import Example

    shots = [Example(input=e.text, output=e.label) for e in body.examples]
    labels = check_labels(body.labels or list(dict.fromkeys(e.output for e in shots)))
    library = library_of(request)
    served = None if body.method == "knn" else _served(state, request, body.model)
    classifier = Classifier(
        labels,
        model=served.model if served is not None else None,
        examples=shots,
        method=body.method,
        k=body.k,
        samples=body.samples,
        calibrate=body.calibrate,
        embedder=library.index.embedder if shots else None,
    )
    if served is None:  # knn: no model, but the embedder's CPU is shared, so it queues too
        gate = state.embed_admissions.setdefault(
            "apps-knn", Admission(state.settings.server.concurrency or 1, 8, name="apps-knn")
        )
    else:
        gate = served.admission
    began = time.perf_counter()
    result = await _run(state, gate, lambda _: classifier.classify(body.text), "classifying")
    if served is not None:
        _account(state, key, served, result.usage, began)
    return {
        **result.model_dump(),
        "usage": _usage(result.usage),
        "model": served.id if served is not None else None,
    }


# -- extract --------------------------------------------------------------------------------


@router.post(
    "/extract",
    summary="Extract fields from a text as JSON that validates against a JSON Schema",
    response_model=ExtractResponse,
    responses=_ERRORS,
)
async def extract(
    body: ExtractRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    from lamina.apps import extract as run
    from lamina.apps.extract import check_schema

    schema = check_schema(body.json_schema)  # 400 naming the problem, before any queueing
    served = _served(state, request, body.model)
    began = time.perf_counter()
    result = await _run(
        state,
        served.admission,
        lambda _: run(body.text, schema, model=served.model, instructions=body.instructions),
        "extracting",
    )
    _account(state, key, served, result.usage, began)
    return {**result.model_dump(), "usage": _usage(result.usage), "model": served.id}


# -- email ----------------------------------------------------------------------------------


def _email(draft: Any, library: Library, model: str) -> dict[str, Any]:
    def fact(f: Any) -> dict[str, Any]:
        return {
            "n": f.n,
            "question": f.question,
            "text": f.text,
            "citation": _citation(f.citation, library),
        }

    return {
        "subject": draft.subject,
        "body": draft.body,
        "citations": [fact(f) for f in draft.citations],
        "facts": [fact(f) for f in draft.facts],
        "usage": _usage(draft.usage),
        "model": model,
    }


@router.post(
    "/email/reply",
    summary="Draft a reply to an email, optionally with cited facts from your documents",
    response_model=EmailResponse,
    responses=_ERRORS,
)
async def email_reply(
    body: ReplyRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    from lamina.apps import reply

    def write(model: Any, index: Any) -> Any:
        return reply(
            body.email,
            model=model,
            tone=body.tone,
            length=body.length,
            instructions=body.instructions,
            index=index,
            signature=body.signature,
        )

    return await _write_email(body, request, state, key, write)


@router.post(
    "/email/draft",
    summary="Write a new email from a short brief, optionally with cited facts",
    response_model=EmailResponse,
    responses=_ERRORS,
)
async def email_draft(
    body: DraftRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    from lamina.apps import draft

    def write(model: Any, index: Any) -> Any:
        return draft(
            body.brief,
            to=body.to,
            model=model,
            tone=body.tone,
            length=body.length,
            index=index,
            signature=body.signature,
        )

    return await _write_email(body, request, state, key, write)


async def _write_email(
    body: ReplyRequest | DraftRequest,
    request: Request,
    state: ServerState,
    key: str,
    write: Callable[[Any, Any], Any],
) -> Any:
    """What both email routes do around ``write(model, index)``: the caller's documents when
    asked for, the served model, an admission slot, the key's usage, the response."""
    library = library_of(request)
    index = (
        await _documents(library, request, body.collection, "take facts from")
        if body.use_documents
        else None
    )
    served = _served(state, request, body.model)
    began = time.perf_counter()
    result = await _run(state, served.admission, lambda _: write(served.model, index), "writing")
    _account(state, key, served, result.usage, began)
    return _email(result, library, served.id)


# -- research -------------------------------------------------------------------------------


@router.post(
    "/research",
    summary="A report on a question from your documents, with verified citations",
    response_model=ResearchResponse,
    responses=_ERRORS,
)
async def research(
    body: ResearchRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    from lamina.apps import research as run

    library = library_of(request)
    index = await _documents(library, request, body.collection, "research")
    served = _served(state, request, body.model)
    began = time.perf_counter()
    report = await _run(
        state,
        served.admission,
        lambda _: run(
            body.question,
            index,
            model=served.model,
            questions=body.questions,
            strategy=body.strategy,
        ),
        "researching",
    )
    _account(state, key, served, report.usage, began)
    return {
        "question": report.question,
        "findings": [f.model_dump() for f in report.findings],
        "open_questions": report.open_questions,
        "sources": [_citation(s, library) for s in report.sources],
        "usage": _usage(report.usage),
        "trace_id": report.trace_id,
        "model": served.id,
    }
