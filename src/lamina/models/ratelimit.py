"""A client-side rate limit on requests and tokens per minute (two token buckets).

Callers block until both buckets have room; nothing is refused. A request larger than a whole
minute's token budget is let through once the bucket is full, so it cannot wait forever.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    """A token bucket refilled at ``per_minute``; ``take`` may overdraw (charge afterwards)."""

    def __init__(self, per_minute: float, clock: Callable[[], float]) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.level = per_minute
        self.clock = clock
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float) -> float:
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount


class RateLimiter:
    """Blocks until a request of ``tokens`` fits both per-minute budgets.

    >>> limiter = RateLimiter(requests_per_minute=600)
    >>> limiter.wait_time(tokens=0)
    0.0
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets: list[tuple[TokenBucket, bool]] = []
        if requests_per_minute:
            self._buckets.append((TokenBucket(requests_per_minute, clock), False))
        if tokens_per_minute:
            self._buckets.append((TokenBucket(tokens_per_minute, clock), True))
        self._lock = threading.Lock()

    def wait_time(self, tokens: int) -> float:
        with self._lock:
            return self._wait_time(tokens)

    def _wait_time(self, tokens: int) -> float:
        return max(
            (b.wait_time(tokens if is_tokens else 1) for b, is_tokens in self._buckets),
            default=0.0,
        )

    def _try_take(self, tokens: int) -> float:
        with self._lock:
            wait = self._wait_time(tokens)
            if wait == 0.0:
                for bucket, is_tokens in self._buckets:
                    bucket.take(tokens if is_tokens else 1)
            return wait

    def acquire(self, tokens: int = 0, *, sleep: Callable[[float], None] = time.sleep) -> None:
        while (wait := self._try_take(tokens)) > 0:
            sleep(wait)

    async def aacquire(self, tokens: int = 0) -> None:
        while (wait := self._try_take(tokens)) > 0:
            await asyncio.sleep(wait)
