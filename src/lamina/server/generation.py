"""One generation from admission to the last token, with its spans, metrics and limits.

A :class:`Generation` holds a slot of its model's admission queue from ``start()`` until
``aclose()``. ``start()`` waits for the slot and the first token, so refusals and failures
before any output (a full queue, a bad schema, a timeout) become proper HTTP statuses; later
failures can only end the stream. ``aclose()`` closes the model's async generator, which stops
generation (for the local backend, after the token being computed), and frees the slot; it runs
when the stream ends, fails, times out or the client goes away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from lamina.errors import InvalidRequestError, LaminaError
from lamina.models.base import ChatModel, join_tool_calls
from lamina.server.errors import RequestTimeout
from lamina.server.pool import Served
from lamina.types import (
    ChatOptions,
    Completion,
    Delta,
    FinishReason,
    Message,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from lamina.server.state import ServerState

__all__ = ["Generation", "preflight"]


async def preflight(model: ChatModel, messages: list[Message], options: ChatOptions) -> None:
    """Validate a request against its model before it queues, in a worker thread.

    Rendering and tokenizing a prompt is CPU work proportional to its size (seconds for
    megabytes): done here, off the event loop, an oversized prompt is refused (400) without
    stalling other requests or taking a slot; the model's own check then sees a prompt that
    fits, which is quick. A ``max_tokens`` above the whole context window of a model that counts
    tokens exactly is refused rather than silently cut.
    """
    prepare = getattr(model, "prepare", None)
    if callable(prepare):
        await asyncio.to_thread(prepare, messages, options)
    asked = "max_tokens" in options.model_fields_set
    if (
        asked
        and getattr(model, "exact_tokens", False)
        and options.max_tokens > model.context_window
    ):
        raise InvalidRequestError(
            f"max_tokens={options.max_tokens} is more than {model.name!r} can ever produce: "
            f"its whole context window is {model.context_window} tokens, prompt included. "
            f"Ask for at most {model.context_window} (the reply ends with finish_reason "
            f"'length' when the window fills up first)."
        )


class Generation:
    def __init__(
        self,
        state: ServerState,
        served: Served,
        messages: list[Message],
        options: ChatOptions,
        *,
        key: str,
    ) -> None:
        self.state = state
        self.served = served
        self.messages = messages
        self.options = options
        self.key = key
        self.timeout_s = state.settings.server.request_timeout_s
        self.deadline = asyncio.get_running_loop().time() + self.timeout_s
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.cached = False
        self._deltas: AsyncIterator[Delta] | None = None
        self._first: Delta | None = None
        self._span: Span | None = None
        self._held = False
        self._closed = False
        self._started = 0.0
        self._completion_tokens = 0

    async def start(self) -> None:
        """Wait for a slot and the first token. Raises LaminaError (nothing held) on failure."""
        tracer, metrics, model_id = self.state.tracer, self.state.metrics, self.served.id
        with tracer.start_as_current_span("queue", attributes={"lamina.model": model_id}) as span:
            try:
                async with asyncio.timeout_at(self.deadline):
                    waited = await self.served.admission.acquire()
            except TimeoutError:
                raise RequestTimeout(self.timeout_s, "waiting in the queue") from None
            span.set_attribute("lamina.queue_wait_s", waited)
        self._held = True
        metrics.queue_wait_seconds.labels(model_id).observe(waited)
        self._span = tracer.start_span("generate", attributes={"lamina.model": model_id})
        self._started = time.perf_counter()
        try:
            self._deltas = self.served.model.astream(self.messages, self.options)
            self._first = await self._next("before the first token")
        except BaseException as exc:
            await self.aclose(exc)
            raise
        metrics.first_token_seconds.labels(model_id).observe(
            time.perf_counter() - self._started + waited
        )
        if self._first is not None and self._first.finish_reason is not None:
            # BaseChatModel answers a cache hit with one delta carrying everything.
            self.cached = True
            metrics.cache_hits.labels(model_id).inc()

    async def _next(self, stage: str) -> Delta | None:
        assert self._deltas is not None
        try:
            async with asyncio.timeout_at(self.deadline):
                delta = await anext(self._deltas, None)
        except TimeoutError:
            raise RequestTimeout(self.timeout_s, stage) from None
        if delta is not None:
            self._completion_tokens += 1 if delta.text or delta.tool_calls else 0
            if delta.finish_reason is not None:
                self.finish_reason = delta.finish_reason
            if delta.usage is not None:
                self.usage = delta.usage
        return delta

    async def deltas(self) -> AsyncIterator[Delta]:
        """The deltas, first one included; closes the generation when done or abandoned."""
        try:
            delta = self._first
            while delta is not None:
                yield delta
                delta = await self._next("while generating")
        except BaseException as exc:
            await self.aclose(exc)
            raise
        await self.aclose()

    async def collect(self) -> Completion:
        """The whole completion (for non-streaming answers)."""
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        pieces: list[ToolCallDelta] = []
        async for delta in self.deltas():
            parts.append(delta.text)
            pieces.extend(delta.tool_calls)
            if delta.logprob is not None:
                logprobs.append(delta.logprob)
        return Completion(
            text="".join(parts),
            tool_calls=join_tool_calls(pieces),
            finish_reason=self.finish_reason or "stop",
            usage=self.usage or Usage(),
            model=self.served.model.name,
            logprobs=logprobs if self.options.logprobs is not None else None,
            cached=self.cached,
        )

    async def aclose(self, error: BaseException | None = None) -> None:
        """Stop generating, free the slot and record what was used. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            closer = getattr(self._deltas, "aclose", None)
            if closer is not None:
                with suppress(Exception):
                    await asyncio.shield(closer())
        finally:
            if self._held:
                self.served.admission.release()
                self._held = False
            self._record(error)

    def _record(self, error: BaseException | None) -> None:
        seconds = time.perf_counter() - self._started
        usage = self.usage or Usage(completion_tokens=self._completion_tokens)
        model_id = self.served.id
        self.state.metrics.record_usage(self.key, model_id, usage, seconds)
        limiter = self.state.limiters.get(self.key)
        if limiter is not None:
            limiter.charge(usage.total_tokens)
        if self._span is not None:
            self._span.set_attributes(
                {
                    "lamina.prompt_tokens": usage.prompt_tokens,
                    "lamina.completion_tokens": usage.completion_tokens,
                    "lamina.finish_reason": self.finish_reason or "",
                    "lamina.cached": self.cached,
                }
            )
            if isinstance(error, asyncio.CancelledError):
                self._span.set_attribute("lamina.cancelled", True)
            elif error is not None:
                self._span.set_status(Status(StatusCode.ERROR, str(error)))
                if not isinstance(error, LaminaError):
                    self._span.record_exception(error)
            self._span.end()
            self._span = None


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None
