"""POST /v1/feedback: rate an answer served over HTTP (thumbs up, or down with a correction).

Ratings land in the same store as ``lamina feedback`` (``$LAMINA_HOME/feedback.sqlite``), so
``lamina tune dataset --from-feedback`` turns them into training data. A key can rate only
the runs answered for it: any other run id, existing or not, is the same 404.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from lamina.errors import InvalidRequestError
from lamina.feedback import FeedbackStore, Rating, feedback_path
from lamina.server.routes._common import errors
from lamina.server.routes._deps import server_state
from lamina.server.state import ServerState
from lamina.server.tenancy import NotFoundError, Tenant, tenant_of
from lamina.server.wire import FeedbackOut, FeedbackRequest

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    summary="Rate an answer (up, or down with an optional correction) for the tuning loop",
    response_model=FeedbackOut,
    responses=errors(400, 404),
)
async def feedback(
    body: FeedbackRequest, request: Request, state: ServerState = Depends(server_state)
) -> FeedbackOut:
    if body.fix is not None and body.rating == "up":
        raise InvalidRequestError(
            "A correction ('fix') goes with rating 'down': an answer rated up is kept as it is."
        )
    if body.fix is not None and not body.fix.strip():
        raise InvalidRequestError("The correction ('fix') is blank; give the right answer.")
    store = FeedbackStore(feedback_path(state.settings))
    made = await asyncio.to_thread(_rate, store, tenant_of(request), body)
    return FeedbackOut(run_id=made.run_id, rating=made.rating, fix=made.fix)


def _rate(store: FeedbackStore, tenant: Tenant, body: FeedbackRequest) -> Rating:
    missing = NotFoundError(
        f"No run {body.run_id[:64]!r} of yours. A run id comes with each answer of POST "
        f"/v1/ask and /v1/agent (run_id)."
    )
    try:
        run = store.get(body.run_id)
    except InvalidRequestError:
        raise missing from None
    if run.meta.get("via") != "http" or run.meta.get("tenant") != tenant.id:
        raise missing
    return store.rate(body.run_id, body.rating, body.fix)
