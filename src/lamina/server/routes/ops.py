"""Operations: GET /health (always open), GET /metrics (Prometheus), GET /v1/traces."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from lamina.server.routes._common import errors
from lamina.server.routes._deps import server_state
from lamina.server.state import ServerState
from lamina.server.tenancy import ForbiddenError, tenant_of
from lamina.telemetry.tracing import read_spans

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness; needs no API key")
async def health(state: ServerState = Depends(server_state)) -> dict[str, Any]:
    return {
        "status": "ok",
        "default_model": state.pool.default_id,
        "queues": {
            s.id: {"running": s.admission.running, "waiting": s.admission.waiting}
            for s in state.pool.all()
        },
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: ServerState = Depends(server_state)) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


@router.get(
    "/v1/traces",
    summary="Recent spans from the local trace store (admin keys only)",
    responses=errors(403),
)
async def traces(
    request: Request,
    state: ServerState = Depends(server_state),
    limit: int = Query(100, ge=1, le=10_000),
    trace_id: str | None = Query(None, pattern="^[0-9a-f]{32}$"),
) -> dict[str, Any]:
    # Spans hold every tenant's questions, answers and passages: an operator's view only.
    if not tenant_of(request).admin:
        raise ForbiddenError(
            "Traces hold every key's requests, so only admin keys may read them. Create one "
            "with `lamina keys create NAME --admin`, or read them on the server with "
            "`lamina traces`."
        )
    await asyncio.to_thread(state.provider.force_flush, 5000)
    spans = await asyncio.to_thread(
        read_spans, state.settings.traces_dir, limit=limit, trace_id=trace_id
    )
    return {"object": "list", "data": spans}
