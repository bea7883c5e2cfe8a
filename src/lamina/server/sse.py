"""Server-sent events the OpenAI way: ``data: {json}\\n\\n`` chunks, ending ``data: [DONE]``."""

from __future__ import annotations

import json
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["DONE", "EventStream", "event"]

DONE = "data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> str:
    """One SSE event.

    >>> event({"a": 1})
    'data: {"a":1}\\n\\n'
    """
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


class EventStream(StreamingResponse):
    """A streaming response that always closes its body generator, even when the client left.

    Starlette cancels the sending task on disconnect; if the generator was suspended at a
    ``yield`` at that moment it would otherwise be finalised only by the garbage collector,
    holding a generation slot (and the model) until then.
    """

    media_type = "text/event-stream"

    def __init__(self, content: Any) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            closer = getattr(self.body_iterator, "aclose", None)
            if closer is not None:
                with anyio.CancelScope(shield=True):
                    await closer()
