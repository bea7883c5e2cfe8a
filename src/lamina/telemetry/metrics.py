"""Prometheus metrics for the server, in a registry of their own (one per app).

Names follow Prometheus conventions: ``_seconds`` histograms, ``_total`` counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lamina.types import Usage

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    """Every metric the server records; ``render()`` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.request_seconds = Histogram(
            "lamina_request_seconds",
            "HTTP request latency by route, model and status.",
            ["route", "model", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "lamina_time_to_first_token_seconds",
            "Time from admission to the first streamed token, queue wait included.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "lamina_queue_wait_seconds",
            "Time a request waited for a generation slot.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.generated_tokens = Counter(
            "lamina_generated_tokens_total", "Completion tokens generated.", ["model"], registry=r
        )
        self.tokens_per_second = Histogram(
            "lamina_tokens_per_second",
            "Completion tokens per second of generation, per request.",
            ["model"],
            buckets=_RATE_BUCKETS,
            registry=r,
        )
        self.key_tokens = Counter(
            "lamina_key_tokens_total",
            "Tokens used per API key, model and kind (prompt or completion).",
            ["key", "model", "kind"],
            registry=r,
        )
        self.key_cost = Counter(
            "lamina_key_cost_usd_total",
            "Cost in USD per API key and model (unknown prices count as 0).",
            ["key", "model"],
            registry=r,
        )
        self.rejected = Counter(
            "lamina_rejected_total",
            "Requests refused before generation, by reason.",
            ["reason"],
            registry=r,
        )
        self.cache_hits = Counter(
            "lamina_cache_hits_total",
            "Responses served from the response cache.",
            ["model"],
            registry=r,
        )

    def watch_queues(self, read: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        """Report ``lamina_queue_depth`` and ``lamina_in_flight`` from ``read()``, which
        returns (model, waiting, running) triples, at every scrape."""
        self.registry.register(_QueueCollector(read))

    def record_usage(self, key: str, model: str, usage: Usage, seconds: float) -> None:
        """Count one finished generation: tokens, tokens/s, per-key tokens and cost."""
        self.generated_tokens.labels(model).inc(usage.completion_tokens)
        if seconds > 0 and usage.completion_tokens:
            self.tokens_per_second.labels(model).observe(usage.completion_tokens / seconds)
        self.key_tokens.labels(key, model, "prompt").inc(usage.prompt_tokens)
        self.key_tokens.labels(key, model, "completion").inc(usage.completion_tokens)
        self.key_cost.labels(key, model).inc(usage.cost_usd or 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _QueueCollector(Collector):
    def __init__(self, read: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "lamina_queue_depth", "Requests waiting for a generation slot.", labels=["model"]
        )
        running = GaugeMetricFamily(
            "lamina_in_flight", "Requests generating now.", labels=["model"]
        )
        for model, waiting, active in self.read():
            depth.add_metric([model], waiting)
            running.add_metric([model], active)
        yield depth
        yield running
