"""Continuous batching: many requests decode together in one llama.cpp context.

:class:`~lamina.models.local.LocalModel` serves one sequence at a time, so with eight clients
seven wait while one decodes. Decoding a token costs about the same for one sequence as for
eight: the weights are read once per step either way. This backend keeps up to ``slots``
sequences in one context (llama.cpp's ``n_seq_max``) and one background thread runs the loop
every serving engine runs:

1. admit waiting requests into free slots, oldest first;
2. build one batch: the last sampled token of every decoding sequence, then prompt tokens of
   newly admitted ones. While others are decoding a step takes at most ``prefill_chunk``
   prompt tokens, so a long prompt delays them by a few bounded steps, not by its whole
   prefill;
3. one ``llama_decode`` for the whole batch;
4. each sequence that produced logits samples with its own sampler chain; its text goes to its
   consumer's queue; it finishes on an end-of-generation token, a stop string or
   ``max_tokens``, and its slot and KV cells are freed at once.

The KV cache holds ``slots * slot_ctx`` cells as one stream per slot; a request may use its
slot's ``slot_ctx`` (its ``context_window``), so it never runs out of cells mid-generation.
Sampling follows LocalModel's chain (top-k, top-p, min-p 0.05, temperature, seeded draw;
greedy at temperature 0; a JSON-schema or tool-call grammar first), so a request gets the same
answer from either backend, tool calls included (:mod:`lamina.models.toolcalls`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from lamina.errors import (
    ConfigError,
    IncompleteOutputError,
    InvalidRequestError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    TransientError,
)
from lamina.models.base import BaseChatModel, Prompt
from lamina.models.local import (
    GgufPrompter,
    StopScanner,
    bundled_model_path,
    collect,
    json_grammar,
    weights_identity,
)
from lamina.models.native import ensure_runtime
from lamina.models.quantize import QUANT_TYPES, cached_requantized
from lamina.models.toolcalls import OutputScanner, call_id, render_messages, tool_grammar
from lamina.settings import Settings
from lamina.types import ChatOptions, Completion, Delta, FinishReason, Message, Usage

__all__ = ["BatchedLocalModel"]

log = logging.getLogger(__name__)

_MIN_P = 0.05  # llama-cpp-python's default, which LocalModel uses
Emit = Callable[[Delta | BaseException], None]


class BatchedLocalModel(BaseChatModel):
    """A GGUF model serving up to ``slots`` requests at once. Loaded on first use.

    ``slot_ctx`` is each request's context window (default: the ``local.n_ctx`` setting split
    across the slots). ``queue_size`` requests may wait for a slot; one more raises
    :class:`~lamina.errors.OverloadedError` with a ``retry_after`` estimate. ``timeout_s``
    bounds each request, queue wait included. Call :meth:`close` to finish what is in flight
    and stop the scheduler thread.
    """

    backend = "local-batched"
    exact_tokens = True

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        slots: int = 8,
        slot_ctx: int | None = None,
        queue_size: int = 32,
        prefill_chunk: int = 128,
        timeout_s: float | None = None,
        settings: Settings | None = None,
    ) -> None:
        path = Path(model_path) if model_path else None
        super().__init__(path.stem if path else "SmolLM2-135M-Instruct", settings=settings)
        self.slot_ctx = slot_ctx or self.settings.local.n_ctx // max(slots, 1)
        if slots < 1 or queue_size < 0 or prefill_chunk < 1 or self.slot_ctx < 16:
            raise InvalidRequestError(
                f"slots={slots}, slot_ctx={self.slot_ctx}, queue_size={queue_size}, "
                f"prefill_chunk={prefill_chunk}: slots and prefill_chunk must be at least 1, "
                f"slot_ctx at least 16 and queue_size at least 0."
            )
        self._path = path
        self._served: Path | None = None
        self.slots = slots
        self.queue_size = queue_size
        self.prefill_chunk = prefill_chunk
        self.timeout_s = timeout_s
        self._prompter: GgufPrompter | None = None
        self._scheduler: _Scheduler | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        """``local-batched[:PATH]``, sized by the ``local.slots``/``slot_ctx``/... settings."""
        cfg = settings.local
        return cls(
            name or cfg.model_path,
            slots=cfg.slots,
            slot_ctx=cfg.slot_ctx,
            queue_size=cfg.queue_size,
            prefill_chunk=cfg.prefill_chunk,
            settings=settings,
        )

    @classmethod
    def known_models(cls, settings: Settings) -> list[str]:
        slots = settings.local.slots
        return [f"local-batched (the local model, continuous batching over {slots} slots)"]

    @property
    def path(self) -> Path:
        """The file served: the model, or its conversion to ``local.batched_format``."""
        if self._path is None or self._served is None:
            source = self._path or self.settings.local.model_path or bundled_model_path()
            self._path = source
            quant = self.settings.local.batched_format
            if quant and quant.lower() not in QUANT_TYPES:
                raise ConfigError(
                    f"local.batched_format is {quant!r}, not a quantization llama.cpp makes. "
                    f"Use one of: {', '.join(QUANT_TYPES)}, or leave it empty to serve the file "
                    f"as it is (LAMINA_LOCAL__BATCHED_FORMAT)."
                )
            self._served = (
                cached_requantized(source, quant, self.settings.home) if quant else source
            )
        return self._served

    @property
    def cache_identity(self) -> str:
        return f"{self.name}@{weights_identity(self.path)}"

    # -- loading --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the weights and start the scheduler now rather than on the first call."""
        _ = self.scheduler

    @property
    def scheduler(self) -> _Scheduler:
        with self._lock:
            if self._scheduler is None:
                self._load()
            assert self._scheduler is not None
            return self._scheduler

    @property
    def prompter(self) -> GgufPrompter:
        """Chat template, tokenizer and vocabulary of the loaded GGUF."""
        _ = self.scheduler
        assert self._prompter is not None
        return self._prompter

    def _load(self) -> None:
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        path = self.path
        if not path.is_file():
            raise ModelNotFoundError(
                f"No GGUF model file at {str(path)!r}. Check the path, or use the bundled "
                f"model with --model local-batched."
            )
        ensure_runtime(path, self.settings)
        set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self.settings.local.n_gpu_layers
        model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
        self._prompter = GgufPrompter(model, path)
        self._scheduler = _Scheduler(self, model, self._prompter)

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop serving: finish the requests in flight (or, ``drain=False``, fail them)."""
        with self._lock:
            scheduler = self._scheduler
        if scheduler is not None:
            scheduler.close(drain=drain, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens ---------------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        """One request's window: its slot's share of the context."""
        return self.slot_ctx

    def count_tokens(self, prompt: Prompt) -> int:
        return self.prompter.count_tokens(prompt)

    def count_request_tokens(self, messages: list[Message], options: ChatOptions) -> int:
        return len(self.prompter.prompt_tokens(render_messages(messages, options)))

    # -- generation -----------------------------------------------------------------------------

    def _submit(self, messages: list[Message], options: ChatOptions, emit: Emit) -> _Request:
        scheduler = self.scheduler
        tokens = self.prompter.prompt_tokens(render_messages(messages, options))
        request = _Request(
            tokens=tokens,
            options=options,
            sampler=self._sampler(options),
            emit=emit,
            scanner=OutputScanner(options, StopScanner(options.stop), call_id(tokens)),
            deadline=time.monotonic() + self.timeout_s if self.timeout_s else None,
        )
        try:
            scheduler.submit(request)
        except BaseException:
            request.free_sampler()
            raise
        return request

    def _sampler(self, options: ChatOptions) -> Any:
        """A sampler chain for one request, built like llama-cpp-python's for LocalModel."""
        import llama_cpp

        vocab = self.prompter.vocab
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        gbnf, root = tool_grammar(options), "root"
        if gbnf is None and (grammar := json_grammar(options.json_schema)) is not None:
            gbnf, root = grammar._grammar, grammar._root
        if gbnf is not None:
            sampler = llama_cpp.llama_sampler_init_grammar(
                vocab, gbnf.encode("utf-8"), root.encode("utf-8")
            )
            if not sampler:
                llama_cpp.llama_sampler_free(chain)
                raise InvalidRequestError(
                    "llama.cpp rejected the grammar built from the JSON schema or the tools' "
                    "parameters. Simplify the schema (no external $ref, no unsupported keywords)."
                )
            add(chain, sampler)
        if options.temperature == 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            seed = options.seed if options.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            add(chain, llama_cpp.llama_sampler_init_top_k(options.top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(options.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(_MIN_P, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(options.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def _stream(self, messages: list[Message], options: ChatOptions) -> Iterator[Delta]:
        inbox: queue.SimpleQueue[Delta | BaseException] = queue.SimpleQueue()
        request = self._submit(messages, options, inbox.put)
        try:
            while True:
                item = inbox.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            request.cancel()  # a no-op once finished; frees the slot if the consumer left

    async def _astream(self, messages: list[Message], options: ChatOptions) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Delta | BaseException] = asyncio.Queue()

        def emit(item: Delta | BaseException) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, item)

        # Tokenizing and building a grammar take a moment: keep them off the event loop.
        submitting = asyncio.ensure_future(asyncio.to_thread(self._submit, messages, options, emit))
        try:
            request = await asyncio.shield(submitting)
        except asyncio.CancelledError:
            submitting.add_done_callback(_cancel_submitted)
            raise
        try:
            while True:
                item = await inbox.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            request.cancel()

    def _chat(self, messages: list[Message], options: ChatOptions) -> Completion:
        return collect(self._stream(messages, options), self.name, options)

    async def _achat(self, messages: list[Message], options: ChatOptions) -> Completion:
        deltas = [delta async for delta in self._astream(messages, options)]
        return collect(deltas, self.name, options)


@dataclass(eq=False)
class _Request:
    """One request's life in the scheduler. Fields below ``seq`` belong to the loop thread."""

    tokens: list[int]
    options: ChatOptions
    sampler: Any
    emit: Emit
    scanner: OutputScanner
    deadline: float | None
    cancelled: bool = False
    seq: int = -1
    n_past: int = 0  # tokens of this sequence in the KV cache
    generated: int = 0
    pending: int | None = None  # sampled, shown, not yet decoded
    decoded: list[int] = field(default_factory=list)  # generated tokens in the KV cache
    admitted_at: float = 0.0
    _freed: bool = field(default=False, repr=False)

    def cancel(self) -> None:
        """The consumer left: the loop drops the sequence before its next step."""
        self.cancelled = True

    def send(self, item: Delta | BaseException) -> None:
        try:
            self.emit(item)
        except RuntimeError:  # the consumer's event loop is closed: nobody is listening
            self.cancelled = True

    def free_sampler(self) -> None:
        if not self._freed:
            import llama_cpp

            llama_cpp.llama_sampler_free(self.sampler)
            self._freed = True


class _Scheduler:
    """Owns the llama.cpp context and the thread that steps every sequence in it."""

    def __init__(self, owner: BatchedLocalModel, model: Any, prompter: GgufPrompter) -> None:
        import llama_cpp
        from llama_cpp import _internals

        cfg = owner.settings.local
        self.name = owner.name
        self.slots = owner.slots
        self.queue_size = owner.queue_size
        self.prefill_chunk = owner.prefill_chunk
        self.n_batch = max(cfg.n_batch, owner.slots)
        self.prompter = prompter
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = owner.slots * owner.slot_ctx
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = owner.slots
        params.n_threads = params.n_threads_batch = cfg.n_threads or os.cpu_count() or 1
        # A KV stream per slot (n_ctx / n_seq_max cells each): attention then sees only the
        # sequence's own cells, so a batched sequence gets bit-for-bit the logits it would get
        # alone. The unified pool gave logits off by up to 0.5 for some sequences.
        params.kv_unified = False
        # As LocalModel's Llama(flash_attn=False), so both give the same numbers.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._model = model
        self._context: Any = _internals.LlamaContext(model=model, params=params, verbose=False)
        self._ctx = self._context.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._cond = threading.Condition(threading.RLock())
        self._waiting: deque[_Request] = deque()
        self._free = list(range(owner.slots - 1, -1, -1))
        # What a free slot's KV cache still holds: a new prompt reuses the longest match.
        self._kept: dict[int, list[int]] = {}
        self._running: list[_Request] = []  # in admission order: that is the prefill order
        self._closing = False
        self._abort = False
        self._native_freed = False
        self._service_s = 1.0  # running mean of admission-to-finish time, for retry_after
        self._thread = threading.Thread(target=self._loop, name="lamina-batched", daemon=True)
        self._thread.start()
        # Never let the interpreter tear llama.cpp down under a running decode.
        atexit.register(self.close, drain=False, timeout=10)

    # -- what callers' threads do -------------------------------------------------------------

    def submit(self, request: _Request) -> None:
        with self._cond:
            if self._closing:
                raise ProviderError(f"{self.name} is shutting down and takes no new requests.")
            # Free slots take waiting requests at the next step, so they count as room too.
            if len(self._waiting) >= self.queue_size + len(self._free):
                retry_after = self._retry_after()
                raise OverloadedError(
                    f"{self.name} is busy: {self.slots} requests generating and "
                    f"{len(self._waiting)} waiting (queue_size={self.queue_size}). "
                    f"Retry in {retry_after:.1f}s, or raise slots/queue_size.",
                    retry_after=retry_after,
                )
            self._waiting.append(request)
            self._cond.notify()

    def load(self) -> tuple[int, int]:
        """(requests generating, requests waiting), for metrics."""
        with self._cond:
            return self.slots - len(self._free), len(self._waiting)

    def close(self, *, drain: bool, timeout: float | None) -> None:
        with self._cond:
            self._closing = True
            self._abort = self._abort or not drain
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: requests still running after %ss; not freeing it", self.name, timeout)
            return
        atexit.unregister(self.close)
        self._release_native()

    def _retry_after(self) -> float:
        rounds = math.ceil((len(self._waiting) + 1) / self.slots)
        return round(max(0.1, rounds * self._service_s), 2)

    # -- the loop thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._waiting or self._running or self._closing):
                        self._cond.wait()
                    if self._abort:
                        self._fail_everything(ProviderError(f"{self.name} was shut down."))
                    if self._closing and not (self._waiting or self._running):
                        return
                    self._admit()
                self._reap()
                if self._running:
                    self._step()
        except BaseException as exc:  # our bug or llama.cpp's: fail loudly, never hang callers
            log.exception("%s: the scheduler loop failed", self.name)
            with self._cond:
                self._closing = True
                self._fail_everything(ProviderError(f"{self.name} failed: {exc!r}"))

    def _admit(self) -> None:
        now = time.monotonic()
        while self._free and self._waiting:
            request = self._waiting.popleft()
            if request.cancelled:
                request.free_sampler()
                continue
            self._place(request)
            request.admitted_at = now
            self._running.append(request)

    def _place(self, request: _Request) -> None:
        """Give the request the free slot whose cache shares the longest prefix with it.

        Chat prompts start alike (template, system prompt), so most requests skip part of
        their prefill. The last prompt token is always evaluated again: its logits are needed.
        """
        import llama_cpp

        shared = {
            seq: _common_prefix(self._kept.get(seq, []), request.tokens) for seq in self._free
        }
        seq = max(self._free[::-1], key=shared.__getitem__)  # ties: the slot freed last
        self._free.remove(seq)
        keep = min(shared[seq], len(request.tokens) - 1)
        llama_cpp.llama_memory_seq_rm(self._memory, seq, keep, -1)
        self._kept.pop(seq, None)
        request.seq = seq
        request.n_past = keep

    def _reap(self) -> None:
        """Drop sequences whose consumer left or whose deadline passed."""
        now = time.monotonic()
        for request in list(self._running):
            if request.cancelled:
                self._release(request)
            elif request.deadline is not None and now > request.deadline:
                request.send(_timeout_error(request, self.name))
                self._release(request)
        with self._cond:
            for request in list(self._waiting):
                if request.cancelled or (request.deadline is not None and now > request.deadline):
                    self._waiting.remove(request)
                    if not request.cancelled:
                        request.send(_timeout_error(request, self.name))
                    request.free_sampler()

    def _step(self) -> None:
        import llama_cpp

        batch = self._batch
        members: list[tuple[_Request, int]] = []  # (request, how many of its tokens are in)
        outputs: list[tuple[_Request, int]] = []  # (request, batch row whose logits it samples)
        n = 0

        def put(token: int, pos: int, seq: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = logits
            n += 1

        # Decoding sequences first: one token each, every step.
        for request in self._running:
            if request.pending is not None:
                put(request.pending, request.n_past, request.seq, True)
                members.append((request, 1))
                outputs.append((request, n - 1))
        # Prompts get what is left; only a bounded share while others wait on this step.
        budget = self.n_batch - n
        if outputs:
            budget = min(budget, self.prefill_chunk)
        for request in self._running:
            left = len(request.tokens) - request.n_past
            if budget <= 0 or request.pending is not None or left <= 0:
                continue
            take = min(left, budget)
            last = len(request.tokens) - 1
            for i in range(request.n_past, request.n_past + take):
                put(request.tokens[i], i, request.seq, i == last)
            members.append((request, take))
            if take == left:
                outputs.append((request, n - 1))
            budget -= take
        batch.n_tokens = n

        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            # 1: no room left in the KV cache; else llama.cpp failed. Fail this batch's
            # requests rather than the whole server.
            error = TransientError(f"llama_decode failed with status {status} in {self.name}.")
            for request, _ in members:
                request.send(error)
                self._release(request, keep_cache=False)
            return
        for request, count in members:
            if request.pending is not None:
                request.decoded.append(request.pending)
            request.n_past += count
        for request, row in outputs:
            self._sample(request, row)

    def _sample(self, request: _Request, row: int) -> None:
        import llama_cpp

        token = int(llama_cpp.llama_sampler_sample(request.sampler, self._ctx, row))
        request.pending = None
        if self.prompter.is_eog(token):
            self._finish(request, "stop")
            return
        request.generated += 1
        top = request.options.logprobs
        logprob = None
        if top is not None:
            logits = llama_cpp.llama_get_logits_ith(self._ctx, row)
            logprob = self.prompter.logprob(logits, token, top)
        if request.scanner.push(self.prompter.piece(token)):
            self._finish(request, "stop")
            return
        delta = request.scanner.take()
        if delta is not None or logprob is not None:
            request.send((delta or Delta()).model_copy(update={"logprob": logprob}))
        if request.generated >= request.options.max_tokens:
            self._finish(request, "length")
        else:
            request.pending = token

    def _finish(self, request: _Request, reason: FinishReason) -> None:
        failure: IncompleteOutputError | None = None
        rest: Delta | None = None
        try:
            rest, reason = request.scanner.finish(reason)
        except IncompleteOutputError as error:  # a tool call cut off by max_tokens
            failure = error
        usage = Usage(prompt_tokens=len(request.tokens), completion_tokens=request.generated)
        self._service_s = 0.8 * self._service_s + 0.2 * (time.monotonic() - request.admitted_at)
        # Free the slot before the consumer hears of the end, so its next request finds it.
        self._release(request)
        if failure is not None:
            request.send(failure)
            return
        if rest is not None:
            request.send(rest)
        request.send(Delta(finish_reason=reason, usage=usage))

    def _release(self, request: _Request, *, keep_cache: bool = True) -> None:
        """Free the slot. Its KV cells stay for a later prompt with the same start."""
        import llama_cpp

        if keep_cache:
            self._kept[request.seq] = [*request.tokens, *request.decoded][: request.n_past]
        else:
            llama_cpp.llama_memory_seq_rm(self._memory, request.seq, -1, -1)
        request.free_sampler()
        self._running.remove(request)
        with self._cond:
            self._free.append(request.seq)

    def _fail_everything(self, error: BaseException) -> None:
        """Under the lock: fail every request, running or waiting."""
        for request in list(self._running):
            request.send(error)
            self._release(request, keep_cache=False)
        while self._waiting:
            request = self._waiting.popleft()
            request.send(error)
            request.free_sampler()

    def _release_native(self) -> None:
        import llama_cpp

        if not self._native_freed:
            llama_cpp.llama_batch_free(self._batch)
            self._context.close()
            self._native_freed = True


def _cancel_submitted(future: asyncio.Future[_Request]) -> None:
    """The consumer left while its request was being submitted: drop it once it is in."""
    if not future.cancelled() and future.exception() is None:
        future.result().cancel()


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two lists share.

    >>> _common_prefix([1, 2, 3], [1, 2, 4, 5])
    2
    """
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _timeout_error(request: _Request, name: str) -> TransientError:
    return TransientError(
        f"{name} did not finish the request in time ({request.generated} tokens generated). "
        f"Raise timeout_s, lower max_tokens, or send fewer requests at once."
    )
