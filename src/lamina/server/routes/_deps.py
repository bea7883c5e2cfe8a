"""What the routes share: the server state and the per-key rate limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from lamina.server.state import ANONYMOUS, ServerState

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.lamina
    return state


def admit_key(request: Request) -> str:
    """Check the caller's key against its rate limit (429 at once); returns the key name."""
    state = server_state(request)
    key = getattr(request.state, "key", None)
    limiter = state.limiter(key)
    if limiter is not None:
        try:
            limiter.admit()
        except Exception:
            state.metrics.rejected.labels("rate_limited").inc()
            raise
    name: str = getattr(request.state, "key_name", ANONYMOUS)
    return name


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first (raises ClientGone)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        watch.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    watch.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone()
    return task.result()
