"""The grounded-answer pipeline: rewrite → retrieve → pack → answer → cite → verify.

    >>> pipeline = RagPipeline(Index("my-index"))                   # doctest: +SKIP
    >>> answer = pipeline.ask("Which format did GGUF replace?")     # doctest: +SKIP
    >>> answer.answer, answer.citations[0].source                    # doctest: +SKIP
    ('It replaced the older GGML format in August 2023. [1]', '.../quantization.html')

Strategies (``RagConfig.strategy``), measured on the sample QA set (docs/rag.md):

- ``extract`` (default): quote the best-supported sentence of the packed passages. The model
  is not asked to write anything, so a 135M model cannot paraphrase or drift.
- ``select``: the model picks the answer among the top candidate sentences, constrained by a
  JSON schema to a valid number, so it can only choose, never invent.
- ``generate``: the model writes a short answer citing ``[n]``; each cited sentence is checked
  against its span, unsupported ones are dropped, and if none survives the answer is retried
  once with a stricter prompt, then falls back to ``extract``. For stronger models.

If the best candidate's relevance is under ``min_relevance`` the answer is "not found in the
documents", listing the closest sources.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lamina.models.base import ChatModel
from lamina.models.embeddings.base import TextEmbedder
from lamina.prompts import render
from lamina.rag.answer import NOT_FOUND, Answer, Citation, SourceRef
from lamina.rag.citations import best_span, cited_passages, parse_claims, strip_markers
from lamina.rag.context import Packed, Passage, pack
from lamina.rag.extract import Candidate, candidates
from lamina.rag.lexical import terms
from lamina.rag.query import rewrite_query
from lamina.rag.verify import Verifier
from lamina.retrieval.index import Index
from lamina.retrieval.search import Mode
from lamina.retrieval.store.base import Hit
from lamina.telemetry import spans
from lamina.types import Message, Usage

__all__ = ["RagConfig", "RagPipeline", "Retry", "Strategy", "Token"]

Strategy = Literal["extract", "select", "generate"]


class RagConfig(BaseModel):
    """How the pipeline retrieves, packs and answers. Defaults suit the bundled 135M model."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = "extract"
    collection: str | None = None
    k: int = Field(8, ge=1)
    mode: Mode = "hybrid"
    #: Upper bound on the prompt's tokens: small models read long contexts poorly.
    max_context_tokens: int = Field(1536, ge=64)
    max_passages: int = Field(6, ge=1)
    answer_tokens: int = Field(96, ge=8)
    #: Sentences quoted by ``extract``; a second one only if it scores nearly as well.
    answer_sentences: int = Field(1, ge=1, le=3)
    #: Best-sentence relevance under which the answer is "not found" (calibrated on
    #: samples/qa_dev.jsonl, see docs/rag.md).
    min_relevance: float = Field(0.39, ge=0.0, le=1.0)
    select_candidates: int = Field(4, ge=2, le=9)
    #: Show ``select`` candidates in a random (seeded) order, so a model that always answers
    #: "1" gains nothing from the ranking; used to measure whether the model really chooses.
    shuffle_candidates: bool = False
    rewrite_with_model: bool = False


@dataclass(frozen=True)
class Token:
    """Answer text as it is produced. ``final``: the whole answer at once (a quote, "not
    found"), not a draft that a :class:`Retry` may still replace."""

    text: str
    final: bool = False


@dataclass(frozen=True)
class Retry:
    """The text streamed so far is being replaced; ``reason`` says why."""

    reason: str


Event = Token | Retry | Answer


def relevance(candidate: Candidate) -> float:
    """How well a sentence answers the query, comparable across queries (0..1).

    Retrieval's fused score is normalised per query, so it says nothing about absolute
    relevance and is left out; lexical coverage and dense similarity are absolute.
    """
    return 0.5 * candidate.signals["lexical"] + 0.5 * max(0.0, candidate.signals["dense"])


class RagPipeline:
    """Answers questions from an :class:`~lamina.retrieval.index.Index` with cited sources."""

    def __init__(
        self,
        index: Index,
        model: ChatModel | None = None,
        *,
        config: RagConfig | None = None,
        embedder: TextEmbedder | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.index = index
        self._model = model
        self.config = config or RagConfig()
        self._embedder = embedder
        self._verifier = verifier

    @property
    def model(self) -> ChatModel:
        if self._model is None:
            from lamina.models import get_model

            self._model = get_model()  # the `model` setting (LAMINA_MODEL), local by default
        return self._model

    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = self.index.embedder
        return self._embedder

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = Verifier(self.embedder)
        return self._verifier

    # -- public -----------------------------------------------------------------------------

    def ask(self, question: str, history: Sequence[str] = ()) -> Answer:
        """Answer ``question``; ``history`` holds the earlier standalone queries of a chat."""
        for event in self.stream(question, history):
            if isinstance(event, Answer):
                return event
        raise AssertionError("stream() ended without an Answer")  # pragma: no cover

    def stream(self, question: str, history: Sequence[str] = ()) -> Iterator[Event]:
        """Yield :class:`Token` s of the answer as they come, maybe a :class:`Retry`, and
        finally the :class:`~lamina.rag.answer.Answer`. One ``rag.ask`` span (a trace of its
        own when nothing encloses it) holds the retrieval and model calls."""
        cfg = self.config
        settings = getattr(self.index, "settings", None)
        root = spans.start("rag.ask", "CHAIN", settings=settings, input=question, mode=cfg.mode)
        root.set(strategy=cfg.strategy, k=cfg.k)
        for event in spans.iterate(root, self._events(question, history)):
            if isinstance(event, Answer):
                root.output(event.answer)
                root.set(found=event.found, answered_by=event.strategy, sources=len(event.sources))
            yield event

    def _events(self, question: str, history: Sequence[str]) -> Iterator[Event]:
        cfg = self.config
        timings: dict[str, float] = {}
        usage = Usage()
        started = clock = time.perf_counter()
        outside = 0.0  # time the consumer spent between our yields: not ours to bill

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + (now - clock) * 1000
            clock = now

        def resume(paused: float) -> None:
            nonlocal clock, outside
            now = time.perf_counter()
            outside += now - paused
            clock = now

        rewriter = self.model if cfg.rewrite_with_model else None
        query = rewrite_query(question, history, model=rewriter)
        lap("rewrite")
        hits = self.index.search(query, cfg.k, mode=cfg.mode, collection=cfg.collection)
        lap("retrieve")
        packed = self._pack(query, hits)
        lap("pack")
        ranked = candidates(query, packed.passages, self.embedder)
        lap("score")
        result = Answer(
            question=question,
            query=query,
            answer=NOT_FOUND,
            found=False,
            sources=[p.ref() for p in packed.passages],
            left_out=packed.left_out,
        )
        best = max((relevance(c) for c in ranked), default=0.0)
        result.relevance = best
        events: Iterator[Event]
        if best < cfg.min_relevance:
            result.sources = result.sources[:3]  # the closest sources, for the reader to check
            result.strategy = "not-found"
            events = iter([Token(NOT_FOUND, final=True)])
        elif cfg.strategy == "generate":
            events = self._generate(query, packed, ranked, result, usage)
        else:
            chosen = ranked[: self._how_many(ranked)]
            if cfg.strategy == "select":
                chosen = [self._select(query, ranked, usage)]
            self._quote(
                result, packed, chosen, "extract" if cfg.strategy == "extract" else "select"
            )
            events = iter([Token(result.answer, final=True)])
        for event in events:
            lap("generate")  # the time it took to produce this event, and only that
            paused = time.perf_counter()
            yield event
            resume(paused)
        lap("generate")
        result.usage = usage
        total = time.perf_counter() - started - outside
        result.timings_ms = {**timings, "total": total * 1000}
        yield result

    # -- stages -----------------------------------------------------------------------------

    def _pack(self, query: str, hits: list[Hit]) -> Packed:
        model = self.model
        window = model.context_window
        room = window - self.config.answer_tokens
        budget = min(self.config.max_context_tokens, room)

        def count(passages: list[Passage]) -> int:
            return model.count_tokens([Message.user(self._prompt(query, passages))])

        base = count([])
        if base > budget and base <= room:
            budget = room  # a long question still fits the window: let it, with fewer passages
        return pack(
            hits,
            count,
            budget,
            model=model.name,
            window=window,
            max_passages=self.config.max_passages,
        )

    def _prompt(self, query: str, passages: Sequence[Passage], template: str = "rag/answer") -> str:
        items = [{"n": p.n, "title": p.title, "text": " ".join(p.text.split())} for p in passages]
        return render(template, question=query, passages=items)

    def _how_many(self, ranked: list[Candidate]) -> int:
        n = 1
        for c in ranked[1 : self.config.answer_sentences]:
            if c.score >= 0.9 * ranked[0].score:
                n += 1
        return n

    def _quote(
        self, result: Answer, packed: Packed, chosen: list[Candidate], strategy: str
    ) -> None:
        by_n = {p.n: p for p in packed.passages}
        parts, cites = [], []
        for c in sorted(chosen, key=lambda c: (c.n, c.start)):
            chunk = by_n[c.n].hit.chunk
            parts.append(f"{' '.join(c.text.split())} [{c.n}]")
            cites.append(
                Citation(
                    n=c.n,
                    source=chunk.source,
                    page=chunk.chunk.page,
                    start=c.start,
                    end=c.end,
                    quote=c.text,
                    verified=True,  # the answer is the span itself
                    support=1.0,
                )
            )
        result.answer = " ".join(parts)
        result.found = True
        result.citations = cites
        result.strategy = strategy

    def _select(self, query: str, ranked: list[Candidate], usage: Usage) -> Candidate:
        shown = ranked[: self.config.select_candidates]
        if self.config.shuffle_candidates:
            shown = random.Random(query).sample(shown, len(shown))
        items = [{"id": i + 1, "text": " ".join(c.text.split())} for i, c in enumerate(shown)]
        schema = {
            "type": "object",
            "properties": {"sentence": {"enum": [i["id"] for i in items]}},
            "required": ["sentence"],
        }
        reply = self.model.chat(
            render("rag/select", question=query, candidates=items),
            temperature=0.0,
            max_tokens=24,
            json_schema=schema,
        )
        _add(usage, reply.usage)
        try:
            pick = int(json.loads(reply.text)["sentence"])
        except (ValueError, KeyError, TypeError):
            pick = 1  # a model-caused error: fall back to the top-scored sentence
        return shown[pick - 1] if 1 <= pick <= len(shown) else shown[0]

    def _generate(
        self,
        query: str,
        packed: Packed,
        ranked: list[Candidate],
        result: Answer,
        usage: Usage,
    ) -> Iterator[Event]:
        for attempt, template in enumerate(("rag/answer", "rag/strict")):
            if attempt:
                result.retried = True
                yield Retry("no sentence of the answer was supported by the passage it cited")
            parts: list[str] = []
            prompt = self._prompt(query, packed.passages, template)
            for delta in self.model.stream(
                prompt, temperature=0.0, max_tokens=self.config.answer_tokens
            ):
                if delta.text:
                    parts.append(delta.text)
                    yield Token(delta.text)
                if delta.usage is not None:
                    _add(usage, delta.usage)
            text = "".join(parts).strip()
            if self._keep_verified(text, query, packed, result):
                result.strategy = "generate"
                return
        yield Retry("falling back to quoting the best-supported sentence")
        self._quote(result, packed, ranked[:1], "extract-fallback")
        yield Token(result.answer, final=True)

    def _keep_verified(self, text: str, query: str, packed: Packed, result: Answer) -> bool:
        """Keep the sentences whose citation supports them and that say more than the
        question ("The instruction is: [1]" is supported, and empty); True if any survived."""
        kept, cites, dropped = [], [], []
        asked = set(terms(query))
        for claim in parse_claims(text):
            if not set(terms(claim.sentence)) - asked:
                dropped.append(claim.sentence)
                continue
            passages = cited_passages(claim.numbers, packed.passages)
            supported: list[Citation] = []
            for passage in passages:
                span = best_span(claim.sentence, passage)
                check = self.verifier.check(claim.sentence, span.text)
                chunk = passage.hit.chunk
                cite = Citation(
                    n=passage.n,
                    source=chunk.source,
                    page=chunk.chunk.page,
                    start=span.start,
                    end=span.end,
                    quote=span.text,
                    verified=check.supported,
                    support=check.score,
                )
                if check.supported:
                    supported.append(cite)
            if supported and NOT_FOUND.lower().rstrip(".") not in claim.sentence.lower():
                markers = "".join(f"[{c.n}]" for c in supported)
                kept.append(f"{strip_markers(claim.sentence)} {markers}")
                cites.extend(supported)
            else:
                dropped.append(claim.sentence)
        result.dropped.extend(dropped)
        if not kept:
            return False
        result.answer = " ".join(kept)
        result.found = True
        result.citations = cites
        return True


def _add(total: Usage, more: Usage) -> None:
    total.prompt_tokens += more.prompt_tokens
    total.completion_tokens += more.completion_tokens
    if total.cost_usd is not None:
        total.cost_usd = None if more.cost_usd is None else total.cost_usd + more.cost_usd


def sources_of(answer: Answer) -> list[SourceRef]:
    """The passages an answer actually cites."""
    cited = {c.n for c in answer.citations}
    return [s for s in answer.sources if s.n in cited]
