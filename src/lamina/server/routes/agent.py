"""POST /v1/agent: a guarded ReAct run (lamina.agents) with the tools the operator enabled.

Only the tools in ``server.agent_tools`` run (``calculator`` and ``search_documents`` by
default); a request may pick some of them, never others. ``search_documents`` searches only
the collections the caller may read (the same scoped view ``/v1/ask`` uses, not the index as a
whole), ``remember``/``recall`` keep one memory per tenant, and ``python`` runs only when the
operator enabled it *and* the sandbox can isolate code on this machine (501 otherwise; the
unsafe fallback ``sandbox.allow_unsafe`` is never used over HTTP). The model is a served id,
as everywhere. The run's limits are the ``[agents]`` settings; a request may ask for fewer
steps, not more, and the run ends by ``server.request_timeout_s`` at the latest.

Streaming (the default) sends ``event: step`` for each step as it happens (a tool call and its
observation, a warning, the answer), then ``event: result`` (what ``lamina agent --json``
prints, plus ``run_id``), then ``data: [DONE]``. Agent spans are not written to the local
trace store, which every key can read through ``GET /v1/traces``: observations hold document
text, which is the caller's alone (OTLP export, the operator's own collector, still gets them).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from lamina.errors import ConfigError, InvalidRequestError, LaminaError
from lamina.feedback import FeedbackStore, feedback_path
from lamina.server.errors import NotImplementedFeature, RequestTimeout, error_body
from lamina.server.library import Library, ScopedIndex
from lamina.server.routes._common import (
    Releasing,
    errors,
    http_status,
    in_thread,
    library_of,
    named_event,
)
from lamina.server.routes._deps import admit_key, server_state
from lamina.server.sse import DONE, EventStream
from lamina.server.state import ServerState
from lamina.server.tenancy import Tenant, tenant_of
from lamina.server.wire import AgentRequest, AgentResult
from lamina.settings import Settings

router = APIRouter(tags=["agent"])
log = logging.getLogger("lamina.server")

_STREAM_DOC = {
    "description": "The run (JSON), or (the default, `stream: true`) server-sent events: "
    "`step` for each step, then `result` (the JSON object), or `error`.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

Query = Annotated[str, Field(min_length=1, max_length=300)]
Count = Annotated[int, Field(ge=1, le=8)]


def scoped_search(view: ScopedIndex, library: Library) -> Any:
    """``search_documents`` over the caller's collections only: same name, arguments and
    output as the built-in tool, whose index is a whole directory."""
    from lamina.tools import FunctionTool

    def search_documents(query: Query, k: Count = 3) -> str:
        """Search the user's documents and return the most relevant passages, numbered, each
        with its source and character span.

        Args:
            query: what to look for, in a few words
            k: how many passages to return (1 to 8)
        """
        hits = view.search(query, k) if view.collection_names else []
        lines, citations = [], []
        for n, hit in enumerate(hits, 1):
            chunk = hit.chunk.chunk
            name = library.display_name(hit.chunk.source)
            where = name + (f", page {chunk.page}" if chunk.page else "")
            lines.append(
                f"[{n}] {' '.join(chunk.text.split())}\n    ({where}, chars "
                f"{chunk.start}-{chunk.end})"
            )
            citations.append(
                {
                    "n": n,
                    "source": name,
                    "document_id": chunk.document_id,
                    "page": chunk.page,
                    "start": chunk.start,
                    "end": chunk.end,
                    "quote": chunk.text,
                    "score": round(hit.score, 4),
                }
            )
        tool.last_data = citations
        return "\n".join(lines) if lines else f"No passages found for {query!r}."

    tool = FunctionTool(search_documents)
    return tool


def _tools(
    settings: Settings, library: Library, tenant: Tenant, names: list[str], view: ScopedIndex
) -> list[Any]:
    from lamina.tools import ToolContext, get_tool

    enabled = settings.server.agent_tools
    for name in names:
        if name not in enabled:
            raise InvalidRequestError(
                f"The tool {name[:64]!r} is not enabled on this server. Enabled: "
                f"{', '.join(enabled) or 'none'} (server.agent_tools)."
            )
    if "python" in names:
        from lamina.tools.sandbox import isolation_available

        if not isolation_available():
            raise NotImplementedFeature(
                "The python tool is enabled but this machine cannot isolate code (no user "
                "namespaces), so it does not run over HTTP. Call the agent without it."
            )
    context = ToolContext(settings=settings, memory=library.root / "memory" / tenant.id)
    return [
        scoped_search(view, library) if name == "search_documents" else get_tool(name, context)
        for name in names
    ]


def _step(step: Any) -> dict[str, Any]:
    return {
        "index": step.index,
        "kind": step.kind,
        "tool": step.tool,
        "arguments": step.arguments,
        "observation": step.observation,
        "ok": step.ok,
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "model_ms": round(step.model_ms, 1),
        "tool_ms": round(step.tool_ms, 1),
    }


@router.post(
    "/v1/agent",
    summary="Run an agent with the enabled tools; steps stream as server-sent events",
    response_model=AgentResult,
    responses={200: _STREAM_DOC, **errors(400, 404, 413, 429, 501, 503, 504)},
)
async def agent(
    body: AgentRequest,
    request: Request,
    state: ServerState = Depends(server_state),
    key: str = Depends(admit_key),
) -> Any:
    from lamina.agents import Agent, AgentConfig

    settings = state.settings
    tenant = tenant_of(request)
    library = library_of(request)
    served = state.pool.get(body.model)
    request.state.model = served.id
    names = list(dict.fromkeys(body.tools or settings.server.agent_tools))
    collections: list[str] = []
    if "search_documents" in names:
        collections = await asyncio.to_thread(library.scope, tenant, body.collection)
    view = library.view(collections)
    tools = _tools(settings, library, tenant, names, view)
    limit = settings.agents.max_steps
    timeout_s = min(settings.agents.timeout_s, settings.server.request_timeout_s)
    config = AgentConfig.from_settings(
        settings.agents, max_steps=min(body.max_steps or limit, limit), timeout_s=timeout_s
    )
    # Local trace store off for these runs: GET /v1/traces shows every key's spans.
    quiet = settings.model_copy(
        update={"server": settings.server.model_copy(update={"local_traces": False})}
    )
    await served.admission.acquire()
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            served.admission.release()

    def produce(emit: Callable[[Any], None], cancelled: threading.Event) -> None:
        runner = Agent(served.model, tools, config=config, settings=quiet, on_step=emit)
        emit(runner.run(body.task))

    async def run() -> AsyncIterator[dict[str, Any] | tuple[str, dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.server.request_timeout_s
        source = in_thread(produce)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(
                        anext(source, None), max(0.001, deadline - loop.time())
                    )
                except TimeoutError:
                    raise RequestTimeout(settings.server.request_timeout_s, "the agent") from None
                if item is None:
                    return
                if hasattr(item, "stop_reason"):
                    release()
                    payload = item.public()
                    payload["run_id"] = await asyncio.to_thread(
                        _record, settings, body.task, item, served.id, tenant, names
                    )
                    yield ("result", payload)
                else:
                    yield _step(item)
        finally:
            await source.aclose()
            release()

    if body.stream:
        return EventStream(Releasing(_events(run(), release), release))
    try:
        async for item in run():
            if isinstance(item, tuple):
                return JSONResponse(item[1])
        raise AssertionError("the agent ended without a result")  # pragma: no cover
    finally:
        release()


async def _events(
    items: AsyncIterator[dict[str, Any] | tuple[str, dict[str, Any]]], release: Callable[[], None]
) -> AsyncIterator[str]:
    try:
        async for item in items:
            if isinstance(item, tuple):
                yield named_event("result", item[1])
            else:
                yield named_event("step", item)
        yield DONE
    except LaminaError as exc:
        code = getattr(exc, "code", None) or type(exc).__name__
        yield named_event("error", error_body(str(exc), http_status(exc), code))
    finally:
        closer = getattr(items, "aclose", None)
        if closer is not None:
            await closer()
        release()


def _record(
    settings: Settings, task: str, result: Any, model: str, tenant: Tenant, tools: list[str]
) -> str | None:
    meta = {
        "via": "http",
        "tenant": tenant.id,
        "key": tenant.key,
        "stop_reason": result.stop_reason,
        "tools": tools,
    }
    try:
        return FeedbackStore(feedback_path(settings)).record(
            "agent", task, result.answer or "", model=model, meta=meta
        )
    except (OSError, sqlite3.Error, ConfigError) as exc:
        log.warning("agent run not recorded for feedback: %s", exc)
        return None
