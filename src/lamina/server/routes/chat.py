"""POST /v1/chat/completions and POST /v1/completions, streamed (SSE) or not."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from lamina.errors import LaminaError
from lamina.server.errors import error_body, status_of
from lamina.server.generation import Generation, preflight
from lamina.server.routes._deps import ClientGone, admit_key, server_state, unless_disconnected
from lamina.server.schemas import (
    ChatRequest,
    CompletionRequest,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    new_id,
    usage_body,
)
from lamina.server.sse import DONE, EventStream, event
from lamina.server.state import ServerState
from lamina.types import ChatOptions, Completion, Delta, Message

router = APIRouter(tags=["generation"])

ChunkFn = Callable[[Delta | None, dict[str, int] | None], dict[str, Any]]


async def _start(
    request: Request,
    state: ServerState,
    model: str,
    messages: list[Message],
    options: ChatOptions,
    key: str,
) -> Generation:
    served = state.pool.get(model)
    request.state.model = served.id
    await preflight(served.model, messages, options)
    generation = Generation(state, served, messages, options, key=key)
    try:
        await generation.start()
    except LaminaError as exc:
        if status_of(exc) == 429:
            state.metrics.rejected.labels("overloaded").inc()
        raise
    return generation


async def _events(
    generation: Generation, chunk: ChunkFn, include_usage: bool, opening: dict[str, Any] | None
) -> AsyncIterator[str]:
    try:
        if opening is not None:
            yield event(opening)
        try:
            async for delta in generation.deltas():
                if delta.text or delta.tool_calls or delta.finish_reason or delta.logprob:
                    yield event(chunk(delta, None))
        except LaminaError as exc:  # after the first token only the stream can say it
            code = getattr(exc, "code", None) or type(exc).__name__
            yield event(error_body(str(exc), status_of(exc), code))
            return
        if include_usage:
            yield event(chunk(None, usage_body(Delta(usage=generation.usage))))
        yield DONE
    finally:
        await generation.aclose()


async def _answer(
    request: Request, generation: Generation, respond: Callable[[Completion], dict[str, Any]]
) -> Any:
    try:
        result = await unless_disconnected(request, generation.collect())
    except ClientGone:
        return Response(status_code=499)
    finally:
        await generation.aclose()
    return respond(result)


@router.post("/v1/chat/completions", summary="Chat completion (OpenAI-compatible)")
async def chat_completions(
    body: ChatRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    messages, options = body.to_messages(), body.to_options()
    generation = await _start(request, state, body.model, messages, options, key)
    rid, model = new_id("chatcmpl"), generation.served.id
    if body.stream:

        def chunk(delta: Delta | None, usage: dict[str, int] | None) -> dict[str, Any]:
            return chat_chunk(rid, model, delta, usage=usage)

        opening = chat_chunk(rid, model, None, role=True)
        return EventStream(_events(generation, chunk, body.include_usage, opening))
    return await _answer(request, generation, lambda r: chat_response(rid, model, r))


@router.post("/v1/completions", summary="Text completion (the prompt is one user turn)")
async def completions(
    body: CompletionRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    messages, options = body.to_messages(), body.to_options()
    generation = await _start(request, state, body.model, messages, options, key)
    rid, model = new_id("cmpl"), generation.served.id
    if body.stream:

        def chunk(delta: Delta | None, usage: dict[str, int] | None) -> dict[str, Any]:
            return completion_chunk(rid, model, delta, usage=usage)

        return EventStream(_events(generation, chunk, body.include_usage, None))
    return await _answer(request, generation, lambda r: completion_response(rid, model, r))
