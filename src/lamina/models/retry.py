"""Retries of transient failures: exponential backoff with full jitter, honouring Retry-After.

>>> policy = RetryPolicy(max_retries=3, base_s=0.5, max_s=4.0)
>>> policy.delay(attempt=0, retry_after=2.0)   # the server's word wins when it gives one
2.0
>>> 0.0 <= policy.delay(attempt=2) <= 2.0       # otherwise uniform in [0, base * 2**attempt]
True
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from lamina.errors import TransientError

__all__ = ["RetryPolicy", "parse_retry_after"]

T = TypeVar("T")
log = logging.getLogger(__name__)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after(None) is None
    True
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """How long to sleep before retry number ``attempt + 1``."""
        if retry_after is not None:
            return retry_after
        return random.uniform(0.0, min(self.max_s, self.base_s * 2**attempt))

    def call(self, fn: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
        """Run ``fn``, retrying :class:`TransientError` up to ``max_retries`` times.

        A Retry-After longer than ``max_s`` is not waited out: the error is raised at once.
        """
        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except TransientError as exc:
                if attempt == self.max_retries or (exc.retry_after or 0.0) > self.max_s:
                    raise
                wait = self.delay(attempt, exc.retry_after)
                log.warning("retry %d/%d in %.2fs: %s", attempt + 1, self.max_retries, wait, exc)
                sleep(wait)
        raise AssertionError("unreachable")

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Async form of :meth:`call`."""
        for attempt in range(self.max_retries + 1):
            try:
                return await fn()
            except TransientError as exc:
                if attempt == self.max_retries or (exc.retry_after or 0.0) > self.max_s:
                    raise
                wait = self.delay(attempt, exc.retry_after)
                log.warning("retry %d/%d in %.2fs: %s", attempt + 1, self.max_retries, wait, exc)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")
