"""The web UI: static files at ``/`` and ``/ui/*``, and ``GET /v1/me`` that it starts with.

The UI is plain HTML, CSS and JavaScript shipped inside the package (``server/static``): no
CDN, no build step, works offline. It holds no data, so its files are served without a key
(by :class:`WebUI`, in front of the authenticating edge); everything it shows comes from the
API with the key the user typed, sent only in the ``Authorization`` header.

Every UI file is sent with a strict Content-Security-Policy: scripts and styles from this
origin only (no inline script, no ``eval``), requests to this origin only, no frames, no
plugins, no form posts elsewhere. Every answer of the server also gets
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lamina.server.routes._common import errors
from lamina.server.routes._deps import server_state
from lamina.server.state import ServerState
from lamina.server.tenancy import tenant_of
from lamina.server.wire import Me

__all__ = ["CSP", "WebUI", "router"]

router = APIRouter(tags=["ui"])

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_EVERYWHERE = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


@router.get(
    "/v1/me", summary="Who the key is and what it may use", response_model=Me, responses=errors()
)
async def me(request: Request, state: ServerState = Depends(server_state)) -> Me:
    tenant = tenant_of(request)
    cfg = state.settings.server
    return Me(
        key=tenant.key,
        admin=tenant.admin,
        auth=tenant.key is not None,
        models=state.pool.ids(),
        strategies=["extract", "select", "generate"],
        agent_tools=list(cfg.agent_tools),
        upload_limit_bytes=cfg.upload_limit_bytes,
        max_upload_files=cfg.max_upload_files,
    )


def _assets() -> dict[str, tuple[bytes, str]]:
    """URL path -> (content, media type) of every file in the static folder, read once."""
    found: dict[str, tuple[bytes, str]] = {}
    folder = resources.files("lamina.server") / "static"
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in _TYPES:
            found[f"/ui/{entry.name}"] = (entry.read_bytes(), _TYPES[suffix])
    if "/ui/index.html" in found:
        found["/"] = found["/ui/index.html"]
    return found


class WebUI:
    """Serves the UI's files (GET/HEAD ``/`` and ``/ui/NAME``, a fixed list read at start:
    no path from a request reaches the file system) and adds the security headers to every
    answer of the app behind it."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.assets = _assets() if enabled else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asset = self.assets.get(scope["path"])
        if asset is not None and scope["method"] in ("GET", "HEAD"):
            await self._serve(scope, send, *asset)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_EVERYWHERE]}
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _serve(self, scope: Scope, send: Send, body: bytes, media: str) -> None:
        headers: list[Any] = [
            (b"content-type", media.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"content-security-policy", CSP.encode()),
            (b"cache-control", b"no-cache"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            *_EVERYWHERE,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
