"""The HTTP/1.1 protocol ``lamina serve`` runs: uvicorn's h11 one, with a proper 431.

uvicorn answers every malformed request with a bare 400, including a request whose headers
pass h11's buffer limit (16 KiB by default, ``h11_max_incomplete_event_size``). Such a client
should hear 431 Request Header Fields Too Large, which h11 itself suggests; this subclass keeps
the error h11 raised and answers with its status hint, in the server's JSON error shape.
"""

from __future__ import annotations

import json
from typing import Any

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE  # what uvicorn uses too
from uvicorn.protocols.http.h11_impl import H11Protocol

from lamina.server.errors import error_body

__all__ = ["LaminaH11Protocol"]


class _Connection(h11.Connection):
    """An h11 connection that remembers the protocol error it raised."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class LaminaH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        self.conn = _Connection(h11.SERVER, limit)

    def send_400_response(self, msg: str) -> None:
        error = getattr(self.conn, "error", None)
        if getattr(error, "error_status_hint", 400) != 431:
            super().send_400_response(msg)
            return
        body = json.dumps(
            error_body(
                "The request headers are too large. Send smaller headers (cookies, tokens).",
                431,
                "request_header_fields_too_large",
            )
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(
                status_code=431, headers=headers, reason=b"Request Header Fields Too Large"
            ),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
