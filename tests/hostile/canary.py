"""A loopback listener that plays an OpenAI-compatible server and records who called it.

It answers chat completions and embeddings validly, so a test sees what a real upstream would
receive: the requests and their headers (an ``Authorization`` carrying a canary key is a leak).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CANARY_KEY = "sk-canary-0123456789abcdef"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class Canary:
    """``with Canary() as canary:`` serves on ``canary.url`` (ending in /v1)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> None:
                canary.seen.append(
                    Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                )

            def do_GET(self) -> None:
                self._record()
                self._send({"object": "list", "data": [{"id": "x", "object": "model"}]})

            def do_POST(self) -> None:
                self._record()
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.endswith("/embeddings"):
                    texts = body.get("input") or [""]
                    texts = [texts] if isinstance(texts, str) else texts
                    data = [
                        {"object": "embedding", "index": i, "embedding": [1.0, 0.0, 0.0]}
                        for i in range(len(texts))
                    ]
                    self._send({"object": "list", "data": data, "model": "x"})
                elif body.get("stream"):
                    self._send_events(
                        [
                            {"choices": [{"index": 0, "delta": {"content": "pong"}}]},
                            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                        ]
                    )
                else:
                    self._send(
                        {
                            "id": "c",
                            "object": "chat.completion",
                            "model": "x",
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": "pong"},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                        }
                    )

            def _send_events(self, events: list[Any]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for event in [*(json.dumps(e) for e in events), "[DONE]"]:
                    self.wfile.write(f"data: {event}\n\n".encode())

            def _send(self, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Canary:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def leaked(self, key: str = CANARY_KEY) -> list[Seen]:
        """Requests that carried ``key`` in any header."""
        return [s for s in self.seen if any(key in v for v in s.headers.values())]
