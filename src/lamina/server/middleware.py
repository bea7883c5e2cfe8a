"""The edge of every request: authentication, the request span, metrics and the access log.

Pure ASGI (not BaseHTTPMiddleware), so streaming responses pass through untouched and a client
disconnect still reaches the route. Secrets never reach a log line: the access log names the
key, never the key itself, and the JSON formatter redacts anything that looks like one.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lamina.server.errors import BodyTooLargeError, error_body
from lamina.server.state import ANONYMOUS, ServerState

__all__ = ["BodyLimitMiddleware", "EdgeMiddleware"]

log = logging.getLogger("lamina.server.access")

#: Routes open without a key even when keys exist.
OPEN_PATHS = frozenset({"/health"})


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        scope.setdefault("state", {})
        status = 500
        with self.state.tracer.start_as_current_span(
            f"{method} {path}", kind=trace.SpanKind.SERVER
        ) as span:

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                refusal = self._authenticate(scope)
                if refusal is not None:
                    await self._refuse(send_status, *refusal)
                else:
                    await self.app(scope, receive, send_status)
            finally:
                # unmatched paths share one label: clients must not choose label values
                route = getattr(scope.get("route"), "path", "unmatched")
                model = scope["state"].get("model", "")
                key = scope["state"].get("key_name", "")
                span.update_name(f"{method} {route}")
                span.set_attributes(
                    {
                        "http.request.method": method,
                        "http.route": route,
                        "http.response.status_code": status,
                        "lamina.model": model,
                        "lamina.key": key,
                    }
                )
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                seconds = time.perf_counter() - started
                self.state.metrics.request_seconds.labels(route, model, str(status)).observe(
                    seconds
                )
                log.info(
                    "%s %s %d",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                        "key": key,
                        "model": model,
                    },
                )

    def _authenticate(self, scope: Scope) -> tuple[int, str, str] | None:
        """None when the request may pass (the key's record goes in scope state)."""
        if scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return None
        keys = self.state.keys
        if not keys.any():
            scope["state"]["key_name"] = ANONYMOUS
            return None
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if not header:
            return 401, "Missing API key: send 'Authorization: Bearer KEY'.", "missing_api_key"
        if scheme.lower() != "bearer" or (record := keys.verify(token.strip())) is None:
            return (
                401,
                "Invalid API key. Create one with `lamina keys create NAME`.",
                "invalid_api_key",
            )
        scope["state"]["key"] = record
        scope["state"]["key_name"] = record.name
        return None

    async def _refuse(self, send: Send, status: int, message: str, code: str) -> None:
        self.state.metrics.rejected.labels("unauthorized").inc()
        body = json.dumps(error_body(message, status, code)).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for a request body over ``limit`` bytes, before any of it is parsed.

    A declared ``Content-Length`` over the limit is refused without reading the body; a
    chunked body is read as it arrives and refused as soon as it passes the limit, so at most
    ``limit`` bytes are ever held. The body is then handed on whole; later ``receive`` calls go
    to the client, so a disconnect still reaches the route.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending it all
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        del chunks
        await self.app(scope, _replay([whole], receive), send)

    async def _refuse(self, send: Send) -> None:
        error = BodyTooLargeError(self.limit)
        body = json.dumps(error_body(str(error), 413, error.code)).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(first: list[Message], receive: Receive) -> Receive:
    pending = list(first)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
