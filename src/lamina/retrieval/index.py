"""An index directory: the one object users open to ingest and search.

    >>> index = Index("my-index")                           # doctest: +SKIP
    >>> index.ingest(["docs/"], collection="docs")           # doctest: +SKIP
    >>> index.search("how do I install it?", k=5)            # doctest: +SKIP

``DIR/lamina.sqlite`` is the source of truth; ``DIR/derived/`` holds the BM25 and dense indexes
the SQLite store searches, kept current as documents come and go (delete it at will: it is
rebuilt on the next search). The embedder used to build an index is recorded in it, so
searching later embeds queries the same way.

To scale out, keep the index in PostgreSQL (pgvector) instead: it is searched inside the
database, so any number of processes can serve it without a copy of the corpus, and ``DIR``
holds nothing:

    >>> Index("unused-dir", store="postgresql://me@db.internal/lamina")   # doctest: +SKIP

One ingest at a time writes to an index; a second one waits ``retrieval.ingest_wait_s``
seconds (setting) and then stops with :class:`~lamina.retrieval.errors.IndexBusyError`.

A collection can carry a description (and example queries), kept as index metadata
``collection:NAME:description`` / ``collection:NAME:examples``; ``search(collection="auto")``
then routes each query to the collection it resembles (:mod:`lamina.retrieval.router`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lamina.errors import InvalidRequestError
from lamina.models.embeddings import DEFAULT_EMBEDDER, Embedder, get_embedder
from lamina.retrieval.chunking import Chunker
from lamina.retrieval.ingest import Ingestor, IngestSummary, Progress
from lamina.retrieval.rerank import Reranker, check_reranker_spec, get_reranker
from lamina.retrieval.router import ROUTER_THRESHOLD, Route, SemanticRouter
from lamina.retrieval.search import Fusion, Mode, Searcher
from lamina.retrieval.store import open_store
from lamina.retrieval.store.base import Filters, Hit, IndexStore
from lamina.settings import Settings, get_settings
from lamina.telemetry import spans

# ``Embedder`` is re-exported: code written against ``lamina.retrieval.index.Embedder`` keeps
# working, and it is the one protocol of the model layer.
__all__ = ["Embedder", "Index", "IndexConfig"]


class IndexConfig(BaseModel):
    """How an index chunks, searches and routes. The defaults are the measured ones."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    #: Chunk size in the embedder's own tokens. With MiniLM, dense retrieval on SciFact is
    #: better on 128-token chunks (nDCG@10 0.678) than on whole abstracts (0.645).
    chunk_tokens: int = Field(128, ge=1)
    #: Tokens of whole sentences that consecutive chunks of one section share.
    chunk_overlap: int = Field(16, ge=0)
    #: How BM25 and dense scores combine; convex fusion beats RRF (Bruch et al., 2023).
    fusion: Fusion = "convex"
    #: The dense weight of convex fusion (robust around 0.5 in that study and on SciFact).
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    #: A second look at the candidates: a spec, ``sentence`` or ``sentence:WEIGHT``, builds a
    #: :class:`~lamina.retrieval.rerank.SentenceReranker` over the index's own embedder (the
    #: config stays plain data); any :class:`~lamina.retrieval.rerank.Reranker` object is
    #: used as given. Off by default: it did not help on SciFact (see rerank.py).
    reranker: str | Reranker | None = None
    #: The cosine a query must reach to be routed (``collection="auto"``); calibrated for
    #: MiniLM (see :class:`~lamina.retrieval.router.SemanticRouter`).
    router_threshold: float = ROUTER_THRESHOLD

    @field_validator("reranker")
    @classmethod
    def _known_reranker(cls, value: str | Reranker | None) -> str | Reranker | None:
        if isinstance(value, str):
            check_reranker_spec(value)  # ConfigError naming the choices
        return value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Self:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be below chunk_tokens "
                f"({self.chunk_tokens}); a quarter of it or less is usual."
            )
        return self


class Index:
    """Ingest into and search one index directory.

    ``store`` is where the source of truth lives: by default ``DIR/lamina.sqlite``; a URL
    whose scheme picks a registered store (``postgresql://...`` for a
    :class:`~lamina.retrieval.store.postgres.PostgresStore` in its default schema,
    ``sqlite://PATH`` or a plain path for SQLite elsewhere; see :mod:`lamina.retrieval.store`),
    or any store instance (which the index then owns and closes). ``embedder`` is an
    :class:`~lamina.models.embeddings.Embedder` or a spec; ``config`` an :class:`IndexConfig`.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        store: IndexStore | str | None = None,
        embedder: Embedder | str | None = None,
        create: bool = True,
        config: IndexConfig | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.settings = settings or get_settings()
        self.config = config or IndexConfig()
        self.store = open_store(store, self.directory, create=create, settings=self.settings)
        self._embedder_arg = embedder
        self._embedder: Embedder | None = None
        self._chunker: Chunker | None = None
        self._searcher: Searcher | None = None
        self._router: SemanticRouter | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder given, else the one this index was built with, else MiniLM."""
        if self._embedder is None:
            given = self._embedder_arg
            if given is None or isinstance(given, str):
                spec = given or self.store.get_meta("embedder_spec") or DEFAULT_EMBEDDER
                self._embedder = get_embedder(spec, settings=self.settings)
                if self.store.get_meta("embedder_spec") is None:
                    self.store.set_meta("embedder_spec", spec)
            else:
                self._embedder = given
        return self._embedder

    @property
    def chunker(self) -> Chunker:
        """Chunks of ``config.chunk_tokens`` tokens as the embedder counts them."""
        if self._chunker is None:
            self._chunker = Chunker.for_embedder(
                self.embedder,
                max_tokens=self.config.chunk_tokens,
                overlap=self.config.chunk_overlap,
            )
        return self._chunker

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            self._searcher = Searcher(
                self.store,
                spans.TracedEmbedder(self.embedder, self.settings),
                reranker=get_reranker(self.config.reranker, self.embedder),
                fusion=self.config.fusion,
                alpha=self.config.alpha,
            )
        return self._searcher

    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        collection: str = "default",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> IngestSummary:
        """Add, update and remove documents so the collection mirrors ``paths``.

        Raises :class:`~lamina.retrieval.errors.IndexBusyError` when another ingest holds the
        index longer than ``retrieval.ingest_wait_s``."""
        ingestor = Ingestor(
            self.store,
            spans.TracedEmbedder(self.embedder, self.settings),
            self.chunker,
            limits=self.settings.loaders,
            wait_s=self.settings.retrieval.ingest_wait_s,
        )
        return ingestor.ingest(
            paths, collection=collection, include=include, exclude=exclude, progress=progress
        )

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: Mode = "hybrid",
        filters: Filters | None = None,
        collection: str | None = None,
        mmr_lambda: float | None = None,
        candidates: int = 100,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; see :meth:`Searcher.search`.

        ``collection="auto"`` searches the collection(s) :meth:`route` picks."""
        if collection == "auto":
            everything = self.collections()
            names = self.route(query)[0] if everything else everything
            if set(names) != set(everything):
                filters = {**(filters or {}), "collection": names}
        elif collection is not None:
            filters = {**(filters or {}), "collection": collection}
        with spans.retriever(query, settings=self.settings, mode=mode, k=k) as span:
            hits = self.searcher.search(
                query, k, mode=mode, filters=filters, mmr_lambda=mmr_lambda, candidates=candidates
            )
            return span.documents(hits)

    def describe_collection(
        self, name: str, description: str, examples: Sequence[str] = ()
    ) -> None:
        """Say what a collection holds, for routing; ``examples`` are queries that belong."""
        self.store.set_meta(f"collection:{name}:description", description)
        self.store.set_meta(f"collection:{name}:examples", json.dumps(list(examples)))

    def router(self) -> SemanticRouter:
        """A router over this index's collections, rebuilt when they or their descriptions
        change. An undescribed collection is described by its name."""
        routes = {}
        for name in self.collections():
            description = self.store.get_meta(f"collection:{name}:description")
            examples = json.loads(self.store.get_meta(f"collection:{name}:examples") or "[]")
            text = description or name.replace("_", " ").replace("-", " ")
            routes[name] = Route(text, tuple(examples))
        if not routes:
            raise InvalidRequestError("The index has no collections to route to: ingest first.")
        current = self._router
        if (
            current is None
            or current.routes != routes
            or current.threshold != self.config.router_threshold
        ):
            current = SemanticRouter(routes, self.embedder, threshold=self.config.router_threshold)
            self._router = current
        return current

    def route(self, query: str) -> tuple[list[str], float]:
        """``(collections, confidence)`` for ``query``; see :class:`SemanticRouter`."""
        return self.router().route(query)

    def count(self, collection: str | None = None) -> tuple[int, int]:
        """(documents, chunks)."""
        return self.store.count(collection)

    def unfinished(self) -> str | None:
        """Why results may be incomplete: the newest ingest run did not finish (it failed,
        was killed, or is still going), said in a sentence; None when it finished."""
        runs = self.store.runs()
        if not runs or runs[-1].get("status") == "done":
            return None
        last = runs[-1]
        status = last.get("status")
        what = {
            "running": "is still running (or its process died; the next ingest resumes it)",
            "failed": "failed",
            "interrupted": "was interrupted",
        }.get(str(status), f"ended with status {status!r}")
        return (
            f"the last ingest into {str(self.directory)!r} (run {last.get('id')}) {what}, so "
            f"the index may be incomplete; run `lamina ingest` again to finish it"
        )

    def check_searchable(self, collection: str | None = None) -> None:
        """Raise InvalidRequestError saying why when there is nothing to search (an empty
        index, an unknown collection) instead of letting a search return no hits."""
        if self.store.count(collection)[1] > 0:
            return
        why = self.unfinished()
        if collection is not None and self.store.count()[1] > 0:
            raise InvalidRequestError(
                f"The collection {collection!r} holds no documents. Collections in this index: "
                f"{', '.join(self.collections())}."
            )
        raise InvalidRequestError(
            f"The index at {str(self.directory)!r} holds no documents"
            + (f": {why}" if why else "; ingest some first")
            + f" (lamina ingest PATH --index {self.directory})."
        )

    def collections(self) -> list[str]:
        return self.store.collections()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
