"""GET /v1/models and GET /v1/models/{id}: the ids the operator configured, nothing else."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from lamina.server.errors import NotServedError, not_served_message
from lamina.server.routes._deps import server_state
from lamina.server.state import ServerState

router = APIRouter(tags=["models"])


def _card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "lamina"}


@router.get("/v1/models", summary="Models served here")
async def list_models(state: ServerState = Depends(server_state)) -> dict[str, Any]:
    ids = list(dict.fromkeys([*state.pool.ids(), *state.embedders.ids()]))
    return {"object": "list", "data": [_card(i) for i in ids]}


@router.get("/v1/models/{model_id:path}", summary="One served model")
async def get_model_card(
    model_id: str, state: ServerState = Depends(server_state)
) -> dict[str, Any]:
    ids = list(dict.fromkeys([*state.pool.ids(), *state.embedders.ids()]))
    if model_id not in ids:
        raise NotServedError(not_served_message(model_id, ids))
    return _card(model_id)
