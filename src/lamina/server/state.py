"""Everything one server instance holds, built once by ``create_app`` and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from lamina.server.embeddings import EmbedderCache
from lamina.server.keys import ApiKey, KeyStore
from lamina.server.limits import Admission, KeyLimiter
from lamina.server.pool import ModelPool
from lamina.settings import Settings
from lamina.telemetry.metrics import Metrics

__all__ = ["ANONYMOUS", "ServerState"]

#: The key name requests are counted under when no API keys exist (auth is off).
ANONYMOUS = "anonymous"


@dataclass
class ServerState:
    settings: Settings
    pool: ModelPool
    keys: KeyStore
    metrics: Metrics
    provider: TracerProvider
    tracer: Tracer
    embedders: EmbedderCache
    limiters: dict[str, KeyLimiter] = field(default_factory=dict)
    embed_admissions: dict[str, Admission] = field(default_factory=dict)

    def limiter(self, key: ApiKey | None) -> KeyLimiter | None:
        """The rate limiter of a key (created on first use); None when it has no limits."""
        name = key.name if key else ANONYMOUS
        if name not in self.limiters:
            cfg = self.settings.server
            rpm = key.requests_per_minute if key and key.requests_per_minute else None
            tpm = key.tokens_per_minute if key and key.tokens_per_minute else None
            rpm = rpm or cfg.requests_per_minute
            tpm = tpm or cfg.tokens_per_minute
            self.limiters[name] = KeyLimiter(rpm, tpm)
        limiter = self.limiters[name]
        return limiter if limiter.requests or limiter.tokens else None
