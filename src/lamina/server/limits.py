"""Back-pressure: a bounded admission queue per model and per-key rate limits.

Both refuse at once instead of making a caller wait without bound: a full queue raises
:class:`~lamina.errors.OverloadedError` and an exhausted key raises
:class:`~lamina.errors.RateLimitError`, each carrying ``retry_after`` for the 429 answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from lamina.errors import OverloadedError, RateLimitError

# The token bucket of the client-side limiter fits as is: ``take`` may overdraw,
# which is how tokens are charged after a request, when its size is known.
from lamina.models.ratelimit import TokenBucket

__all__ = ["Admission", "KeyLimiter"]


class Admission:
    """At most ``concurrency`` requests run and ``queue_size`` wait; the next is refused.

    >>> async def demo():
    ...     gate = Admission(concurrency=1, queue_size=0)
    ...     async with gate.slot():
    ...         try:
    ...             async with gate.slot():
    ...                 pass
    ...         except OverloadedError as exc:
    ...             return exc.retry_after
    >>> asyncio.run(demo())
    1.0
    """

    def __init__(self, concurrency: int, queue_size: int, *, name: str = "model") -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.name = name
        self.running = 0
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(concurrency)
        self._service_s = 1.0  # moving average of how long a slot is held
        self._started = 0.0

    def retry_after(self) -> float:
        """Seconds until a place is likely free: the queue ahead served at the recent pace."""
        ahead = (self.waiting + 1) / self.concurrency
        return float(min(60, max(1, math.ceil(ahead * self._service_s))))

    async def acquire(self) -> float:
        """Take a generation slot, waiting in the bounded queue; returns the seconds waited.

        Raises OverloadedError at once when the queue is full. Pair with ``release()``.
        """
        if self._semaphore.locked() and self.waiting >= self.queue_size:
            raise OverloadedError(
                f"The server is at capacity for {self.name!r}: {self.running} running and "
                f"{self.waiting} waiting (server.queue_size={self.queue_size}). Retry after "
                f"the Retry-After delay.",
                status=429,
                retry_after=self.retry_after(),
            )
        queued = time.perf_counter()
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        self._started = time.perf_counter()
        return self._started - queued

    def release(self) -> None:
        self.running -= 1
        self._semaphore.release()
        held = time.perf_counter() - self._started
        self._service_s = 0.8 * self._service_s + 0.2 * held

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a generation slot for the block; yields the seconds spent waiting for it."""
        waited = await self.acquire()
        try:
            yield waited
        finally:
            self.release()


class KeyLimiter:
    """Requests and tokens per minute for one API key; refuses rather than waits.

    A request is admitted when a request is available and the token bucket is not overdrawn;
    its tokens are charged when it finishes (``charge``), since only then is the count known.

    >>> limiter = KeyLimiter(requests_per_minute=1)
    >>> limiter.admit()
    >>> try:
    ...     limiter.admit()
    ... except RateLimitError as exc:
    ...     print(exc.retry_after)
    60.0
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests = TokenBucket(requests_per_minute, clock) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute, clock) if tokens_per_minute else None

    def admit(self) -> None:
        waits = []
        if self.requests is not None:
            waits.append(self.requests.wait_time(1))
        if self.tokens is not None:
            waits.append(self.tokens.wait_time(0))  # > 0 only while overdrawn
        wait = max(waits, default=0.0)
        if wait > 0:
            raise RateLimitError(
                f"This API key's rate limit is exhausted; retry after {math.ceil(wait)} s.",
                status=429,
                retry_after=float(math.ceil(wait)),
            )
        if self.requests is not None:
            self.requests.take(1)

    def charge(self, tokens: int) -> None:
        if self.tokens is not None:
            self.tokens.wait_time(0)  # refill up to now before overdrawing
            self.tokens.take(tokens)
