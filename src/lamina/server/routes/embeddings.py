"""POST /v1/embeddings, against any :class:`~lamina.server.embeddings.Embedder`.

A request holds at most ``server.max_embedding_inputs`` texts. They are embedded in turns of
``server.embedding_batch`` texts, each turn queueing afresh at the model's admission gate (a
FIFO), so a small request that arrives behind a large one waits for one turn, not for the whole
of it. Embedding and chat generation share the CPU: while any chat is generating, each turn
is followed by a pause as long as the turn (at most a second), so a large embedding request
takes at most about half of the machine from the chats instead of competing for all of it.
The embedding and the JSON of the answer (hundreds of thousands of floats, written one vector
at a time) are made in worker threads: the event loop, and with it every stream and /health,
never waits on them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, Request, Response

from lamina.errors import InvalidRequestError, ProviderError
from lamina.server.embeddings import Embedder
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
) -> Response:
    cfg = state.settings.server
    texts = body.texts()
    if len(texts) > cfg.max_embedding_inputs:
        raise InvalidRequestError(
            f"The request holds {len(texts)} inputs; at most {cfg.max_embedding_inputs} are "
            f"accepted per request (server.max_embedding_inputs). Split it into several requests."
        )
    model_id, embedder = state.embedders(body.model)
    request.state.model = model_id
    if body.dimensions is not None and body.dimensions != embedder.dimension:
        raise InvalidRequestError(
            f"{model_id!r} makes {embedder.dimension}-dimensional vectors; "
            f"dimensions={body.dimensions} is not supported."
        )
    admission = _admission(state, model_id)
    timeout = cfg.request_timeout_s
    parts: list[npt.NDArray[np.float32]] = []
    try:
        async with asyncio.timeout(timeout):
            with state.tracer.start_as_current_span(
                "embed", attributes={"lamina.texts": len(texts)}
            ):
                for start in range(0, len(texts), cfg.embedding_batch):
                    batch = texts[start : start + cfg.embedding_batch]
                    async with admission.slot():
                        began = time.perf_counter()
                        parts.append(await asyncio.to_thread(_embed, embedder, batch))
                    last_turn = start + cfg.embedding_batch >= len(texts)
                    if not last_turn and any(s.admission.running for s in state.pool.all()):
                        await asyncio.sleep(min(1.0, time.perf_counter() - began))
    except TimeoutError:
        raise RequestTimeout(timeout, "embedding") from None
    payload = await asyncio.to_thread(
        _answer, np.concatenate(parts), texts, model_id, body.encoding_format
    )
    return Response(payload, media_type="application/json")


def _embed(embedder: Embedder, texts: list[str]) -> npt.NDArray[np.float32]:
    vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    if vectors.shape != (len(texts), embedder.dimension):
        raise ProviderError(
            f"Embedder {embedder.name!r} returned shape {vectors.shape}, "
            f"expected ({len(texts)}, {embedder.dimension})."
        )
    return vectors


def _answer(
    vectors: npt.NDArray[np.float32], texts: list[str], model_id: str, encoding: str
) -> bytes:
    """The response body, serialised one vector at a time: one json.dumps over millions of
    floats would hold the GIL for seconds, and with it the event loop's thread."""
    items = []
    for i, vector in enumerate(vectors):
        value = (
            json.dumps(base64.b64encode(vector.astype("<f4").tobytes()).decode())
            if encoding == "base64"
            else json.dumps(vector.tolist())
        )
        items.append(f'{{"object": "embedding", "index": {i}, "embedding": {value}}}')
    tokens = sum(max(1, len(t) // 4) for t in texts)  # an estimate: embedders expose no count
    usage = json.dumps({"prompt_tokens": tokens, "total_tokens": tokens})
    body = (
        f'{{"object": "list", "data": [{", ".join(items)}], '
        f'"model": {json.dumps(model_id)}, "usage": {usage}}}'
    )
    return body.encode()
