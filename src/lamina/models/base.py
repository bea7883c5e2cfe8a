"""The ChatModel interface and the machinery every backend shares.

A backend subclasses :class:`BaseChatModel` and writes two methods, ``_chat`` and ``_stream``
(plus ``count_tokens`` and ``context_window``). The base class does the rest, the same way for
every backend: option validation, the context-window check, the response cache, the client-side
rate limit, retries with backoff, cost accounting and latency.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from lamina.errors import ContextOverflowError, IncompleteOutputError, InvalidRequestError
from lamina.models.cache import ResponseCache, cache_key
from lamina.models.pricing import cost_usd
from lamina.models.ratelimit import RateLimiter
from lamina.models.retry import RetryPolicy
from lamina.settings import Settings, get_settings
from lamina.telemetry import spans
from lamina.types import (
    ChatOptions,
    Completion,
    Delta,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
    as_messages,
)

__all__ = ["BaseChatModel", "ChatModel", "Prompt", "drop_oldest_turns", "join_tool_calls"]

log = logging.getLogger(__name__)

Prompt = str | Message | Sequence[Message | dict[str, Any]]


@runtime_checkable
class ChatModel(Protocol):
    """What every layer above the models needs from a chat model."""

    @property
    def name(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    def count_tokens(self, prompt: Prompt) -> int: ...

    def chat(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Completion: ...

    def stream(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Iterator[Delta]: ...

    async def achat(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Completion: ...

    def astream(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> AsyncIterator[Delta]: ...


class BaseChatModel(ABC):
    """Shared behaviour of the built-in backends; third-party backends may subclass it too."""

    backend: ClassVar[str]
    #: True when count_tokens is exact, so the context window can be checked before a call.
    exact_tokens: ClassVar[bool] = False

    def __init__(self, model: str, *, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.model = model
        self.retry = RetryPolicy(
            self.settings.max_retries, self.settings.backoff_base_s, self.settings.backoff_max_s
        )
        limited = self.settings.requests_per_minute or self.settings.tokens_per_minute
        self.limiter = (
            RateLimiter(self.settings.requests_per_minute, self.settings.tokens_per_minute)
            if limited
            else None
        )
        self._cache: ResponseCache | None = None
        self._cache_lock = threading.Lock()

    # -- what a backend provides -------------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        """Build from the part of a model spec after ``backend:`` (None when absent)."""

    @classmethod
    def known_models(cls, settings: Settings) -> list[str]:
        """Model names worth listing in ``lamina models``."""
        return []

    @property
    @abstractmethod
    def context_window(self) -> int: ...

    @abstractmethod
    def count_tokens(self, prompt: Prompt) -> int: ...

    def count_request_tokens(self, messages: list[Message], options: ChatOptions) -> int:
        """Tokens of the whole request as the model sees it; a backend that puts the tool
        definitions into the prompt text counts them here."""
        return self.count_tokens(messages)

    @abstractmethod
    def _chat(self, messages: list[Message], options: ChatOptions) -> Completion:
        """One call, no retries. Raise TransientError for failures worth retrying."""

    @abstractmethod
    def _stream(self, messages: list[Message], options: ChatOptions) -> Iterator[Delta]:
        """Yield deltas; the last one carries finish_reason and usage."""

    async def _achat(self, messages: list[Message], options: ChatOptions) -> Completion:
        return await asyncio.to_thread(self._chat, messages, options)

    async def _astream(self, messages: list[Message], options: ChatOptions) -> AsyncIterator[Delta]:
        async for delta in _stream_in_thread(self._stream, messages, options):
            yield delta

    # -- the shared machinery -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.model}"

    @property
    def cache_identity(self) -> str:
        """What besides the request decides a deterministic answer, as the response cache keys
        it: the model's name for an API model; a local backend adds its weights file."""
        return self.name

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache, opened on first use; None when disabled in settings."""
        if not self.settings.cache:
            return None
        with self._cache_lock:
            if self._cache is None:
                self._cache = ResponseCache(self.settings.cache_path)
        return self._cache

    def prepare(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> tuple[list[Message], ChatOptions, int]:
        """Validate and fit a request: (messages, options, number of turns truncated)."""
        base = (options or ChatOptions()).model_dump(exclude_unset=options is None)
        opts = ChatOptions.model_validate({**base, **overrides})
        messages = as_messages(prompt)
        if not messages:
            raise InvalidRequestError("The prompt is empty: pass a string or at least one message.")
        return self._fit(messages, opts)

    def _fit(
        self, messages: list[Message], options: ChatOptions
    ) -> tuple[list[Message], ChatOptions, int]:
        if not self.exact_tokens:
            return messages, options, 0
        window = self.context_window
        n = self.count_request_tokens(messages, options)
        dropped = 0
        if options.truncate == "start" and n + options.max_tokens > window:
            messages, dropped = drop_oldest_turns(
                messages,
                lambda kept: (
                    self.count_request_tokens(kept, options) + options.max_tokens <= window
                ),
            )
            n = self.count_request_tokens(messages, options)
            log.warning("truncate='start' dropped the %d oldest turn(s) to fit", dropped)
        if n >= window:
            raise ContextOverflowError(n, window, self.name)
        if n + options.max_tokens > window:
            # The completion may use what is left of the window; finish_reason says "length".
            options = options.model_copy(update={"max_tokens": window - n})
        return messages, options, dropped

    def _key(self, messages: list[Message], options: ChatOptions) -> str | None:
        if self.cache is None or not options.deterministic:
            return None
        return cache_key(self.cache_identity, messages, options)

    def _estimate_tokens(self, messages: list[Message], options: ChatOptions) -> int:
        chars = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages)
        return chars // 4 + options.max_tokens

    def _priced(self, usage: Usage) -> Usage:
        cost = cost_usd(
            self.backend,
            self.model,
            usage.prompt_tokens,
            usage.completion_tokens,
            self.settings.pricing,
        )
        return usage.model_copy(update={"cost_usd": cost})

    def _finish(self, result: Completion, started: float, dropped: int) -> Completion:
        return result.model_copy(
            update={
                "usage": self._priced(result.usage),
                "latency_ms": (time.perf_counter() - started) * 1000,
                "truncated_messages": dropped,
            }
        )

    def chat(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Completion:
        """Messages in, one completion out. Deterministic calls are served from the cache."""
        messages, opts, dropped = self.prepare(prompt, options, **overrides)
        with spans.llm(self.name, messages, opts, settings=self.settings) as span:
            return span.completion(self._chat_prepared(messages, opts, dropped))

    def _chat_prepared(
        self, messages: list[Message], opts: ChatOptions, dropped: int
    ) -> Completion:
        key = self._key(messages, opts)
        if key and self.cache and (hit := self.cache.get(key)):
            return hit
        if self.limiter:
            self.limiter.acquire(self._estimate_tokens(messages, opts))
        started = time.perf_counter()
        result = self._finish(self.retry.call(lambda: self._chat(messages, opts)), started, dropped)
        _check_complete(result, opts)
        if key and self.cache:
            self.cache.put(key, result)
        return result

    async def achat(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Completion:
        messages, opts, dropped = self.prepare(prompt, options, **overrides)
        with spans.llm(self.name, messages, opts, settings=self.settings) as span:
            return span.completion(await self._achat_prepared(messages, opts, dropped))

    async def _achat_prepared(
        self, messages: list[Message], opts: ChatOptions, dropped: int
    ) -> Completion:
        key = self._key(messages, opts)
        if key and self.cache and (hit := self.cache.get(key)):
            return hit
        if self.limiter:
            await self.limiter.aacquire(self._estimate_tokens(messages, opts))
        started = time.perf_counter()
        result = await self.retry.acall(lambda: self._achat(messages, opts))
        result = self._finish(result, started, dropped)
        _check_complete(result, opts)
        if key and self.cache:
            self.cache.put(key, result)
        return result

    def stream(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> Iterator[Delta]:
        """Yield text deltas as they are generated; the last carries finish_reason and usage.

        Transient failures are retried until the first delta arrives, never after: a retry
        mid-stream would repeat text the caller has already shown.
        """
        messages, opts, _ = self.prepare(prompt, options, **overrides)
        key = self._key(messages, opts)
        if key and self.cache and (hit := self.cache.get(key)):
            yield _replay(hit)
            return
        if self.limiter:
            self.limiter.acquire(self._estimate_tokens(messages, opts))

        def start() -> tuple[Delta, Iterator[Delta]]:
            deltas = self._stream(messages, opts)
            return next(deltas), deltas

        started = time.perf_counter()
        first, rest = self.retry.call(start)
        collected: list[Delta] = []
        for delta in _chain(first, rest):
            if delta.usage is not None:
                delta = delta.model_copy(update={"usage": self._priced(delta.usage)})
            collected.append(delta)
            yield delta
        result = _assemble(collected, self.name, started)
        spans.record_llm(self.name, messages, opts, result, started=started, settings=self.settings)
        _check_complete(result, opts)
        if key and self.cache:
            self.cache.put(key, result)

    async def astream(
        self, prompt: Prompt, options: ChatOptions | None = None, **overrides: Any
    ) -> AsyncIterator[Delta]:
        messages, opts, _ = self.prepare(prompt, options, **overrides)
        key = self._key(messages, opts)
        if key and self.cache and (hit := self.cache.get(key)):
            yield _replay(hit)
            return
        if self.limiter:
            await self.limiter.aacquire(self._estimate_tokens(messages, opts))

        async def start() -> tuple[Delta, AsyncIterator[Delta]]:
            deltas = self._astream(messages, opts)
            return await anext(deltas), deltas

        started = time.perf_counter()
        first, rest = await self.retry.acall(start)
        collected: list[Delta] = []
        pending: Delta | None = first
        while pending is not None:
            delta = pending
            if delta.usage is not None:
                delta = delta.model_copy(update={"usage": self._priced(delta.usage)})
            collected.append(delta)
            yield delta
            pending = await anext(rest, None)
        result = _assemble(collected, self.name, started)
        spans.record_llm(self.name, messages, opts, result, started=started, settings=self.settings)
        _check_complete(result, opts)
        if key and self.cache:
            self.cache.put(key, result)


def drop_oldest_turns(
    messages: list[Message], fits: Callable[[list[Message]], bool]
) -> tuple[list[Message], int]:
    """Drop the oldest turns until ``fits(messages)``: (kept messages, how many dropped).

    System messages and the newest turn are always kept; a user turn goes together with the
    assistant reply after it, so roles keep alternating, and an assistant turn that calls tools
    goes together with the tool results that answer it (a result without its call is invalid).

    >>> turns = [Message.system("s"), Message.user("q1"), Message.assistant("a1")]
    >>> turns.append(Message.user("q2"))
    >>> kept, dropped = drop_oldest_turns(turns, lambda m: len(m) <= 2)
    >>> [m.content for m in kept], dropped
    (['s', 'q2'], 2)
    """
    kept = list(messages)
    dropped = 0
    while not fits(kept):
        oldest = next((i for i, m in enumerate(kept[:-1]) if m.role != "system"), None)
        if oldest is None:
            break
        end = oldest + 1
        if kept[oldest].role == "user" and end < len(kept) - 1 and kept[end].role == "assistant":
            end += 1
        # The results of the calls just dropped (and stray results at the front) go too.
        while end < len(kept) - 1 and kept[end].role == "tool":
            end += 1
        del kept[oldest:end]
        dropped += end - oldest
    return kept, dropped


def _check_complete(result: Completion, options: ChatOptions) -> None:
    """Structured output cut off by max_tokens does not parse: say so instead of returning it.

    The same holds for a reply that had to be a tool call (the local backend reports a call cut
    short as ``length`` with no calls)."""
    if result.finish_reason != "length":
        return
    if options.json_schema is not None or (options.must_call and not result.tool_calls):
        raise IncompleteOutputError(result.text, options.max_tokens)


def join_tool_calls(pieces: Iterable[ToolCallDelta]) -> list[ToolCall]:
    """Streamed tool-call pieces joined into whole calls, in index order.

    >>> join_tool_calls([ToolCallDelta(index=0, id="c1", name="calc"),
    ...                  ToolCallDelta(index=0, arguments='{"x": '),
    ...                  ToolCallDelta(index=0, arguments="1}")])
    [ToolCall(id='c1', name='calc', arguments='{"x": 1}')]
    """
    calls: dict[int, dict[str, str]] = {}
    for piece in pieces:
        call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
        call["id"] = piece.id or call["id"]
        call["name"] = piece.name or call["name"]
        call["arguments"] += piece.arguments
    return [
        ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
        for i, c in sorted(calls.items())
    ]


def _replay(hit: Completion) -> Delta:
    """A cached completion as one delta."""
    pieces = [
        ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
        for i, c in enumerate(hit.tool_calls)
    ]
    return Delta(text=hit.text, tool_calls=pieces, finish_reason=hit.finish_reason, usage=hit.usage)


def _chain(first: Delta, rest: Iterator[Delta]) -> Iterator[Delta]:
    yield first
    yield from rest


def _assemble(deltas: list[Delta], model: str, started: float) -> Completion:
    last = deltas[-1]
    return Completion(
        text="".join(d.text for d in deltas),
        finish_reason=last.finish_reason or "stop",
        usage=last.usage or Usage(),
        model=model,
        latency_ms=(time.perf_counter() - started) * 1000,
        tool_calls=join_tool_calls(p for d in deltas for p in d.tool_calls),
    )


async def _stream_in_thread(
    produce: Any, messages: list[Message], options: ChatOptions
) -> AsyncIterator[Delta]:
    """Run a blocking delta iterator in a worker thread; stop it when the consumer leaves."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue()
    cancelled = threading.Event()

    def pump() -> None:
        try:
            for delta in produce(messages, options):
                loop.call_soon_threadsafe(queue.put_nowait, delta)
                if cancelled.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    worker = loop.run_in_executor(None, pump)
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        await asyncio.shield(worker)
