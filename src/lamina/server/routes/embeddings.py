"""POST /v1/embeddings, against any :class:`~lamina.server.embeddings.Embedder`."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request

from lamina.errors import InvalidRequestError, ProviderError
from lamina.server.errors import RequestTimeout
from lamina.server.limits import Admission
from lamina.server.routes._deps import admit_key, server_state
from lamina.server.schemas import EmbeddingRequest
from lamina.server.state import ServerState

router = APIRouter(tags=["embeddings"])


def _admission(state: ServerState, name: str) -> Admission:
    if name not in state.embed_admissions:
        cfg = state.settings.server
        state.embed_admissions[name] = Admission(cfg.concurrency or 1, cfg.queue_size, name=name)
    return state.embed_admissions[name]


@router.post("/v1/embeddings", summary="Embed texts (OpenAI-compatible)")
async def embeddings(
    body: EmbeddingRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> dict[str, Any]:
    texts = body.texts()
    embedder = state.embedders(body.model)
    model_id = body.model or embedder.name
    request.state.model = model_id
    if body.dimensions is not None and body.dimensions != embedder.dimension:
        raise InvalidRequestError(
            f"{model_id!r} makes {embedder.dimension}-dimensional vectors; "
            f"dimensions={body.dimensions} is not supported."
        )
    timeout = state.settings.server.request_timeout_s
    try:
        async with asyncio.timeout(timeout), _admission(state, model_id).slot():
            with state.tracer.start_as_current_span(
                "embed", attributes={"lamina.texts": len(texts)}
            ):
                raw = await asyncio.to_thread(embedder.embed_documents, texts)
    except TimeoutError:
        raise RequestTimeout(timeout, "embedding") from None
    vectors = np.asarray(raw, dtype=np.float32)
    if vectors.shape != (len(texts), embedder.dimension):
        raise ProviderError(
            f"Embedder {embedder.name!r} returned shape {vectors.shape}, "
            f"expected ({len(texts)}, {embedder.dimension})."
        )
    data = []
    for i, vector in enumerate(vectors):
        value: Any = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode()
            if body.encoding_format == "base64"
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(max(1, len(t) // 4) for t in texts)  # an estimate: embedders expose no count
    return {
        "object": "list",
        "data": data,
        "model": model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
