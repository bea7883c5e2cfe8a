"""Rerankers: a second look at the first-stage candidates, with evidence the first stage lacked.

A :class:`Reranker` reorders hits for a query; it may change their scores, never invents hits.
Give an index one in its config, ``Index(..., config=IndexConfig(reranker="sentence:0.5"))``
(a spec, built over the index's own embedder by :func:`get_reranker`) or
``IndexConfig(reranker=my_reranker)`` (any object), or pass one to ``Searcher(...,
reranker=...)``.

:class:`SentenceReranker` is offline and needs no weights beyond the embedder's: a chunk
embedding averages every sentence of the chunk, so one sentence that answers the query is
diluted by its neighbours. Scoring the best *sentence* (late interaction at sentence
granularity, in the spirit of MaxP, Dai & Callan 2019) recovers it; the result is combined
with the first-stage score, as fusion combines BM25 and dense:

    final = (1 - w) · first_stage + w · max_sentence_cosine      (each min-max normalised)

It is not on by default: on SciFact (test, hybrid first stage, MiniLM) it did not help
(nDCG@10 0.738 → 0.734 at w = 0.5, depth 20; worse at w = 0.3, 0.7 and 1.0 on a development
half of the queries), and its sentence vectors cost about as much to compute as the ingest.

>>> from lamina.retrieval.documents import Chunk
>>> from lamina.retrieval.store.base import Hit, StoredChunk
>>> def hit(key, text, score):
...     chunk = Chunk(id=str(key), document_id="d", text=text, start=0, end=len(text))
...     stored = StoredChunk(key=key, collection="c", chunk=chunk, source="s")
...     return Hit(chunk=stored, score=score)
>>> class Words:  # a toy embedder: one axis per word
...     vocab = ["cats", "dogs", "purr", "bark"]
...     def embed_documents(self, texts):
...         rows = [[float(w in t.lower()) for w in self.vocab] for t in texts]
...         return normalize(np.array(rows, dtype=np.float32))
...     def embed_query(self, text):
...         return self.embed_documents([text])[0]
>>> hits = [hit(1, "Dogs bark. Dogs run. Dogs dig.", 0.9), hit(2, "Cats purr. Cats nap.", 0.8)]
>>> [h.chunk.key for h in SentenceReranker(Words(), weight=0.7).rerank("cats purr", hits)]
[2, 1]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from lamina.errors import ConfigError
from lamina.models.embeddings.base import TextEmbedder, Vectors, normalize
from lamina.retrieval.sentences import split_sentences
from lamina.retrieval.store.base import Hit, StoredChunk

__all__ = ["RERANKERS", "Reranker", "SentenceReranker", "check_reranker_spec", "get_reranker"]

#: Reranker specs :func:`get_reranker` knows, as ``NAME`` or ``NAME:WEIGHT``.
RERANKERS = ("sentence",)


@runtime_checkable
class Reranker(Protocol):
    """Reorders hits for a query; may change scores, never invents hits."""

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


def _minmax(values: Vectors) -> Vectors:
    low, high = float(values.min()), float(values.max())
    return (values - low) / ((high - low) or 1.0)


class SentenceReranker:
    """Reranks the top ``depth`` hits by their best sentence's cosine to the query.

    Sentence vectors are cached per chunk (up to ``cache_chunks`` chunks, least recently used
    dropped). On a cold cache a query embeds the sentences of its ``depth`` candidates, which
    costs far more than the first stage; call :meth:`prepare` with the corpus's chunks after
    ingest to pay that once. Hits past ``depth`` keep their order, below the reranked ones.
    """

    def __init__(
        self,
        embedder: TextEmbedder,
        *,
        weight: float = 0.5,
        depth: int = 30,
        cache_chunks: int = 1_000_000,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(
                f"The reranker weight must be within 0..1, got {weight!r}: 0 keeps the "
                f"retrieval order, 1 uses only the reranker's score."
            )
        self.embedder = embedder
        self.weight = weight
        self.depth = depth
        self.cache_chunks = cache_chunks
        self._cache: OrderedDict[tuple[int, str], Vectors] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def sentences(chunk: StoredChunk) -> list[str]:
        """The chunk's sentences; a chunk without sentence breaks is one sentence."""
        text = chunk.chunk.text
        found = [text[s:e] for s, e in split_sentences(text)]
        return [s for s in found if s.strip()] or [text]

    def prepare(self, chunks: Iterable[StoredChunk], batch: int = 256) -> int:
        """Embed and cache the sentences of ``chunks`` (e.g. right after ingest); returns how
        many sentences were embedded."""
        pending: list[StoredChunk] = []
        embedded = 0
        for chunk in chunks:
            pending.append(chunk)
            if len(pending) == batch:
                embedded += self._embed(pending)
                pending = []
        return embedded + self._embed(pending)

    def _embed(self, chunks: Sequence[StoredChunk]) -> int:
        with self._lock:
            todo = [c for c in chunks if (c.key, c.chunk.text) not in self._cache]
        if not todo:
            return 0
        per_chunk = [self.sentences(c) for c in todo]
        vectors = normalize(self.embedder.embed_documents([s for ss in per_chunk for s in ss]))
        with self._lock:
            start = 0
            for chunk, sentences in zip(todo, per_chunk, strict=True):
                self._cache[(chunk.key, chunk.chunk.text)] = vectors[start : start + len(sentences)]
                start += len(sentences)
            while len(self._cache) > self.cache_chunks:
                self._cache.popitem(last=False)
        return len(vectors)

    def _vectors(self, chunk: StoredChunk) -> Vectors:
        with self._lock:
            key = (chunk.key, chunk.chunk.text)
            self._cache.move_to_end(key)
            return self._cache[key]

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        head, tail = hits[: self.depth], hits[self.depth :]
        if len(head) < 2 or self.weight == 0.0:
            return hits
        self._embed([h.chunk for h in head])
        q = normalize(self.embedder.embed_query(query))
        best = np.array([float((self._vectors(h.chunk) @ q).max()) for h in head], np.float32)
        first = np.array([h.score for h in head], dtype=np.float32)
        low, span = float(first.min()), float(first.max() - first.min()) or 1.0
        final = (1 - self.weight) * _minmax(first) + self.weight * _minmax(best)
        reranked = [
            h.model_copy(update={"score": float(s), "scores": {**h.scores, "sentence": float(b)}})
            for h, s, b in zip(head, final, best, strict=True)
        ]
        reranked.sort(key=lambda h: -h.score)
        # Past the depth: first-stage order, every score below the lowest reranked (≥ 0).
        rest = [h.model_copy(update={"score": (h.score - low) / span - 1.0}) for h in tail]
        return reranked + rest


def check_reranker_spec(spec: str) -> float | None:
    """The weight a reranker spec gives (None: the reranker's default); ConfigError if the
    spec is not one :func:`get_reranker` can build.

    >>> check_reranker_spec("sentence"), check_reranker_spec("sentence:0.3")
    (None, 0.3)
    """
    name, _, weight = spec.partition(":")
    try:
        value = float(weight) if weight else None
    except ValueError:
        value = float("nan")  # not a number: refused below, as one out of range is
    if name not in RERANKERS or (value is not None and not 0.0 <= value <= 1.0):
        raise ConfigError(
            f"Unknown reranker {spec!r}: use 'sentence' or 'sentence:WEIGHT' with WEIGHT "
            f"within 0..1 (0 keeps the retrieval order, 1 uses only the reranker's score)."
        )
    return value


def get_reranker(spec: str | Reranker | None, embedder: TextEmbedder) -> Reranker | None:
    """The reranker for an index's config: ``None`` for none, an object as given, and a spec
    (``sentence`` or ``sentence:WEIGHT``) built over ``embedder``."""
    if spec is None or isinstance(spec, Reranker):
        return spec
    weight = check_reranker_spec(spec)
    return (
        SentenceReranker(embedder) if weight is None else SentenceReranker(embedder, weight=weight)
    )
