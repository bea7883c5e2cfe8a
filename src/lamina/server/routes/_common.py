"""What the document routes share: the library, the job queue, documented error answers,
named server-sent events, and a blocking iterator run off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from fastapi import Request

from lamina.errors import LaminaError
from lamina.server.errors import status_of
from lamina.server.jobs import JobQueue, JobsClosedError
from lamina.server.library import Library
from lamina.server.tenancy import ForbiddenError, NotFoundError
from lamina.server.wire import ErrorBody

__all__ = [
    "ERRORS",
    "Releasing",
    "errors",
    "http_status",
    "in_thread",
    "jobs_of",
    "library_of",
    "named_event",
]

T = TypeVar("T")

_DESCRIPTIONS = {
    400: "Invalid request: the message names the field and the fix.",
    401: "Missing or invalid API key.",
    403: "You may read this but not change it.",
    404: "Not found, or not yours (the same answer either way).",
    413: "The body is over the size limit.",
    429: "Rate limit or a full queue; see Retry-After.",
    501: "This server cannot do it (e.g. a tool it cannot run safely here).",
    503: "Unavailable (shutting down, or a model failed to load).",
    504: "The request deadline passed.",
}
#: Every documented error answer; a route lists the statuses it can give with ``errors()``.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _DESCRIPTIONS.items()
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: ERRORS[s] for s in (401, *statuses)}


def http_status(exc: LaminaError) -> int:
    """The status of an error, including this package's own resource errors."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ForbiddenError):
        return 403
    if isinstance(exc, JobsClosedError):
        return 503
    return status_of(exc)


def library_of(request: Request) -> Library:
    library: Library = request.app.state.library
    return library


def jobs_of(request: Request) -> JobQueue:
    jobs: JobQueue = request.app.state.jobs
    return jobs


def named_event(name: str, payload: Any) -> str:
    """One server-sent event with a name.

    >>> named_event("token", {"text": "Hi"})
    'event: token\\ndata: {"text":"Hi"}\\n\\n'
    """
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


class Cancelled(Exception):
    """Raised inside the worker thread once the consumer has gone."""


async def in_thread(
    produce: Callable[[Callable[[T], None], threading.Event], None],
) -> AsyncGenerator[T, None]:
    """Run ``produce(emit, cancelled)`` in a worker thread; yield what it emits, in order.

    The consumer leaving (a client disconnect, a timeout) sets ``cancelled`` and makes the
    next ``emit`` raise :class:`Cancelled`, so the producer stops at its next item instead of
    running to the end; an exception in the producer is raised here.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = threading.Event()

    def emit(item: T) -> None:
        if cancelled.is_set():
            raise Cancelled()
        loop.call_soon_threadsafe(queue.put_nowait, ("item", item))

    def run() -> None:
        try:
            produce(emit, cancelled)
        except Cancelled:
            pass
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            return
        loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

    worker = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                break
            if kind == "error":
                raise value
            yield value
    finally:
        cancelled.set()
        if not worker.done():
            # The thread finishes its current item on its own; don't wait for it here.
            worker.add_done_callback(lambda f: f.exception())


def iterate(iterator: Iterator[T]) -> Callable[[Callable[[T], None], threading.Event], None]:
    """A producer for :func:`in_thread` that walks ``iterator`` (closed when cancelled)."""

    def produce(emit: Callable[[T], None], cancelled: threading.Event) -> None:
        try:
            for item in iterator:
                emit(item)
                if cancelled.is_set():
                    return
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                close()

    return produce


class Releasing:
    """An async iterator that releases its slot when closed, even if never started (an async
    generator that never ran would skip its ``finally``)."""

    def __init__(self, inner: AsyncIterator[str], release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release

    def __aiter__(self) -> Releasing:
        return self

    async def __anext__(self) -> str:
        return await self.inner.__anext__()

    async def aclose(self) -> None:
        try:
            closer = getattr(self.inner, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            self.release()
