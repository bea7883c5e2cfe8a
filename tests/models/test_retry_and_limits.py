from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from lamina.errors import RateLimitError, TransientError
from lamina.models.pricing import cost_usd
from lamina.models.ratelimit import RateLimiter
from lamina.models.retry import RetryPolicy, parse_retry_after


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("garbage") is None
    later = parse_retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 25 <= later <= 31


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(max_retries=10, base_s=1.0, max_s=8.0)
    for attempt in range(10):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= min(8.0, 2**attempt) for d in delays)
    assert len({round(policy.delay(3), 6) for _ in range(20)}) > 1  # jittered


def test_retry_after_from_the_server_is_honoured() -> None:
    slept: list[float] = []
    outcomes = iter([RateLimitError("429", retry_after=1.5), "ok"])

    def call() -> str:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    assert RetryPolicy(max_retries=2).call(call, sleep=slept.append) == "ok"
    assert slept == [1.5]


def test_a_retry_after_longer_than_the_cap_is_raised_not_waited() -> None:
    slept: list[float] = []

    def call() -> str:
        raise RateLimitError("429", retry_after=3600)

    with pytest.raises(RateLimitError):
        RetryPolicy(max_retries=3, max_s=30).call(call, sleep=slept.append)
    assert slept == []


def test_transient_without_hint_backs_off() -> None:
    slept: list[float] = []
    failures = iter([TransientError("a"), TransientError("b")])

    def call() -> str:
        for exc in failures:
            raise exc
        return "ok"

    assert RetryPolicy(max_retries=2, base_s=0.5).call(call, sleep=slept.append) == "ok"
    assert len(slept) == 2 and slept[0] <= 0.5 and slept[1] <= 1.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_requests_per_minute_spreads_calls() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, clock=clock)
    for _ in range(60):  # a full bucket: a minute's worth at once
        limiter.acquire(sleep=clock.sleep)
    assert clock.now == 0.0
    limiter.acquire(sleep=clock.sleep)
    assert clock.now == pytest.approx(1.0)  # then one per second


def test_tokens_per_minute_waits_for_budget() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=1000, clock=clock)
    limiter.acquire(900, sleep=clock.sleep)
    limiter.acquire(400, sleep=clock.sleep)  # needs 300 more tokens: 18 s at 1000/min
    assert clock.now == pytest.approx(18.0)
    limiter.acquire(5000, sleep=clock.sleep)  # larger than a minute: waits for a full bucket
    assert clock.now == pytest.approx(18.0 + 60.0)


def test_cost_from_the_pricing_table() -> None:
    assert cost_usd("openai", "gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)
    assert cost_usd("openai", "unknown-model", 10, 10) is None
    assert cost_usd("openai", "mine", 2_000_000, 0, {"mine": (1.0, 2.0)}) == pytest.approx(2.0)
    assert cost_usd("local", "anything", 10**9, 10**9) == 0.0
