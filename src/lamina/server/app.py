"""The application: ``create_app(settings)`` builds it, ``serve(settings)`` runs it with uvicorn.

Shutdown is uvicorn's: on SIGTERM/SIGINT it stops accepting connections, lets in-flight
requests, streams included, finish for up to ``server.shutdown_grace_s`` seconds, then runs
the lifespan's shutdown: the ingest worker finishes the file in progress (up to
``server.shutdown_grace_s`` again) and marks every file not ingested as failed in its job
(:mod:`lamina.server.jobs`), then the spans are flushed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lamina import __version__
from lamina.errors import LaminaError
from lamina.models.base import ChatModel
from lamina.server.embeddings import Embedder, EmbedderCache
from lamina.server.errors import error_body, error_response, status_of
from lamina.server.jobs import JobQueue
from lamina.server.keys import KeyStore
from lamina.server.library import Library
from lamina.server.middleware import BodyLimitMiddleware, EdgeMiddleware
from lamina.server.pool import ModelPool
from lamina.server.routes import routers
from lamina.server.routes._common import http_status
from lamina.server.routes.ui import WebUI
from lamina.server.state import ServerState
from lamina.settings import Settings, get_settings
from lamina.telemetry.metrics import Metrics
from lamina.telemetry.tracing import make_tracer_provider

__all__ = ["create_app", "serve"]

log = logging.getLogger("lamina.server")


def create_app(
    settings: Settings | None = None,
    *,
    models: Mapping[str, ChatModel] | None = None,
    embedders: Mapping[str, Embedder] | None = None,
    embedder_factory: Callable[[str], Embedder] | None = None,
    index_embedder: Any = None,
    warm_up: bool = True,
) -> FastAPI:
    """The OpenAI-compatible server.

    Clients may name only the models the operator configured (``server.model_id`` for the
    default, ``server.models``, ``server.embedding_models``; see :mod:`lamina.server.pool`).
    ``models`` serves given ChatModel instances under the given ids (the default id
    included); ``embedders`` likewise, beside the configured embedding models.
    ``index_embedder`` embeds the uploaded documents (an embedder, or a spec; default: the
    one the server's index was built with, else MiniLM).
    ``warm_up`` loads the default model's weights at startup rather than on the first request.
    """
    settings = settings or get_settings()
    provider = make_tracer_provider(settings)
    pool = ModelPool(settings, models)
    state = ServerState(
        settings=settings,
        pool=pool,
        keys=KeyStore(settings.keys_path),
        metrics=Metrics(),
        provider=provider,
        tracer=provider.get_tracer("lamina.server", __version__),
        embedders=EmbedderCache(dict(embedders or {}), embedder_factory, settings=settings),
    )
    state.metrics.watch_queues(
        lambda: [
            *((s.id, s.admission.waiting, s.admission.running) for s in pool.all()),
            *((k, a.waiting, a.running) for k, a in state.embed_admissions.items()),
        ]
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        default = pool.default()  # fail at startup, not on the first request, on a bad spec
        warm = getattr(default.model, "warm_up", None)
        if warm_up and callable(warm):
            await asyncio.to_thread(warm)
        log.info("serving %s as %r", default.model.name, default.id)
        jobs.open()
        try:
            yield
        finally:
            await asyncio.to_thread(jobs.close, settings.server.shutdown_grace_s)
            library.close()
            provider.shutdown()
            state.keys.close()

    library = Library(settings, embedder=index_embedder)
    jobs = JobQueue(library, max_queued=settings.server.max_queued_jobs)
    app = FastAPI(
        title="Lamina",
        version=__version__,
        description="An OpenAI-compatible server for Lamina models, grounded answers over "
        "your documents (/v1/ask, /v1/documents), agents (/v1/agent) and a web UI at /.",
        lifespan=lifespan,
    )
    app.state.lamina = state
    app.state.library = library
    app.state.jobs = jobs
    for router in routers:
        app.include_router(router)
    _add_error_handlers(app)
    app.add_middleware(
        _BodyLimits,
        default=settings.server.max_body_bytes,
        uploads=settings.server.upload_limit_bytes,
    )
    app.add_middleware(EdgeMiddleware, state=state)
    app.add_middleware(WebUI, enabled=settings.server.ui)  # outside the edge: UI files need no key
    if settings.server.cors_origins:  # added last, so outermost: preflights need no key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
        )
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def lamina_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LaminaError)
        status = http_status(exc)
        if status == status_of(exc):
            return error_response(exc)
        body = error_body(str(exc), status, getattr(exc, "code", None) or type(exc).__name__)
        if status == 403:
            body["error"]["type"] = "permission_error"
        return JSONResponse(body, status_code=status)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse(error_body(f"Invalid request: {problems}", 400), status_code=400)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            error_body(str(exc.detail), exc.status_code),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(
            error_body("Internal server error; the server log has the details.", 500),
            status_code=500,
        )

    app.add_exception_handler(LaminaError, lamina_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


#: Routes whose body is an upload: limited by server.upload_limit_bytes, not max_body_bytes.
UPLOAD_PATHS = frozenset({"/v1/documents"})


class _BodyLimits:
    """The body limit of each request: uploads get theirs, every other route the default."""

    def __init__(self, app: Any, default: int, uploads: int) -> None:
        self.default = BodyLimitMiddleware(app, limit=default)
        self.uploads = BodyLimitMiddleware(app, limit=uploads)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        upload = scope["type"] == "http" and scope["path"] in UPLOAD_PATHS
        await (self.uploads if upload else self.default)(scope, receive, send)


def serve(settings: Settings | None = None, app: Any = None) -> None:
    """Run the server with uvicorn until SIGINT/SIGTERM, then drain and stop."""
    import uvicorn

    from lamina.telemetry.logs import configure_logging

    settings = settings or get_settings()
    cfg = settings.server
    configure_logging(cfg.log_level)
    from lamina.server.protocol import LaminaH11Protocol

    uvicorn.run(
        app or create_app(settings),
        host=cfg.host,
        port=cfg.port,
        http=LaminaH11Protocol,
        access_log=False,  # the edge middleware logs each request, without secrets
        log_config=None,
        timeout_graceful_shutdown=int(cfg.shutdown_grace_s),
        lifespan="on",
    )
