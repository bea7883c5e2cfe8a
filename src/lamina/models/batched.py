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
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self

from lamina.errors import (
    ConfigError,
    InvalidRequestError,
    ModelNotFoundError,
)
from lamina.models.base import BaseChatModel, Prompt
from lamina.models.llama_private import grammar_source, load_model
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
from lamina.models.scheduler import Emit, Request, Scheduler
from lamina.models.toolcalls import OutputScanner, call_id, render_messages, tool_grammar
from lamina.settings import Settings
from lamina.types import ChatOptions, Completion, Delta, Message

__all__ = ["BatchedLocalModel"]

log = logging.getLogger(__name__)

_MIN_P = 0.05  # llama-cpp-python's default, which LocalModel uses


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
        self._scheduler: Scheduler | None = None
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
    def scheduler(self) -> Scheduler:
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
        path = self.path
        if not path.is_file():
            raise ModelNotFoundError(
                f"No GGUF model file at {str(path)!r}. Check the path, or use the bundled "
                f"model with --model local-batched."
            )
        ensure_runtime(path, self.settings)
        model = load_model(path, self.settings.local.n_gpu_layers)
        self._prompter = GgufPrompter(model, path)
        self._scheduler = Scheduler(self, model, self._prompter)

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

    def _submit(self, messages: list[Message], options: ChatOptions, emit: Emit) -> Request:
        scheduler = self.scheduler
        tokens = self.prompter.prompt_tokens(render_messages(messages, options))
        request = Request(
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
            gbnf, root = grammar_source(grammar)
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


def _cancel_submitted(future: asyncio.Future[Request]) -> None:
    """The consumer left while its request was being submitted: drop it once it is in."""
    if not future.cancelled() and future.exception() is None:
        future.result().cancel()
