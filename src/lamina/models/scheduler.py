"""The continuous-batching loop behind :class:`~lamina.models.batched.BatchedLocalModel`.

One :class:`Scheduler` owns a llama.cpp context with one KV stream per slot and a thread that
steps every admitted sequence together (the algorithm is described in
:mod:`lamina.models.batched`); callers' threads only :meth:`Scheduler.submit` a
:class:`Request` and read what its ``emit`` callback sends: text deltas, then a final delta
with the finish reason and usage, or an exception.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lamina.errors import IncompleteOutputError, OverloadedError, ProviderError, TransientError
from lamina.models.llama_private import context_handle, new_context
from lamina.models.local import GgufPrompter
from lamina.models.toolcalls import OutputScanner
from lamina.types import ChatOptions, Delta, FinishReason, Usage

if TYPE_CHECKING:
    from lamina.models.batched import BatchedLocalModel

__all__ = ["Emit", "Request", "Scheduler"]

log = logging.getLogger(__name__)

Emit = Callable[[Delta | BaseException], None]
"""Where a request's output goes: each delta, then the final one or an exception."""


@dataclass(eq=False)
class Request:
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


class Scheduler:
    """Owns the llama.cpp context and the thread that steps every sequence in it."""

    def __init__(self, owner: BatchedLocalModel, model: Any, prompter: GgufPrompter) -> None:
        import llama_cpp

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
        self._context: Any = new_context(model, params)
        self._ctx = context_handle(self._context)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._cond = threading.Condition(threading.RLock())
        self._waiting: deque[Request] = deque()
        self._free = list(range(owner.slots - 1, -1, -1))
        # What a free slot's KV cache still holds: a new prompt reuses the longest match.
        self._kept: dict[int, list[int]] = {}
        self._running: list[Request] = []  # in admission order: that is the prefill order
        self._closing = False
        self._abort = False
        self._native_freed = False
        self._service_s = 1.0  # running mean of admission-to-finish time, for retry_after
        self._thread = threading.Thread(target=self._loop, name="lamina-batched", daemon=True)
        self._thread.start()
        # Never let the interpreter tear llama.cpp down under a running decode.
        atexit.register(self.close, drain=False, timeout=10)

    # -- what callers' threads do -------------------------------------------------------------

    def submit(self, request: Request) -> None:
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

    def _place(self, request: Request) -> None:
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
        members: list[tuple[Request, int]] = []  # (request, how many of its tokens are in)
        outputs: list[tuple[Request, int]] = []  # (request, batch row whose logits it samples)
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

    def _sample(self, request: Request, row: int) -> None:
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

    def _finish(self, request: Request, reason: FinishReason) -> None:
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

    def _release(self, request: Request, *, keep_cache: bool = True) -> None:
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


def _timeout_error(request: Request, name: str) -> TransientError:
    return TransientError(
        f"{name} did not finish the request in time ({request.generated} tokens generated). "
        f"Raise timeout_s, lower max_tokens, or send fewer requests at once."
    )
