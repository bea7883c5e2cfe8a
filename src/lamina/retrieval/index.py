"""An index directory: the one object users open to ingest and search.

    >>> index = Index("my-index")                           # doctest: +SKIP
    >>> index.ingest(["docs/"], collection="docs")           # doctest: +SKIP
    >>> index.search("how do I install it?", k=5)            # doctest: +SKIP

``DIR/lamina.sqlite`` is the source of truth; ``DIR/derived/`` holds the BM25 and dense indexes
built from it (delete it at will: it is rebuilt on the next search). The embedder used to build
an index is recorded in it, so searching later embeds queries the same way.

To scale out, keep the source of truth in PostgreSQL (pgvector) instead; ``DIR`` then holds
only the derived indexes:

    >>> Index("cache-dir", store="postgresql://me@db.internal/lamina")   # doctest: +SKIP

A collection can carry a description (and example queries), kept as index metadata
``collection:NAME:description`` / ``collection:NAME:examples``; ``search(collection="auto")``
then routes each query to the collection it resembles (:mod:`lamina.retrieval.router`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lamina.errors import ConfigError, InvalidRequestError
from lamina.retrieval.chunking import Chunker
from lamina.retrieval.ingest import DocumentEmbedder, Ingestor, IngestSummary, Progress
from lamina.retrieval.rerank import Reranker
from lamina.retrieval.router import ROUTER_THRESHOLD, Route, SemanticRouter
from lamina.retrieval.search import Fusion, Mode, Searcher
from lamina.retrieval.store.base import Filters, Hit, IndexStore
from lamina.retrieval.store.sqlite import SQLiteStore
from lamina.settings import Settings, get_settings

__all__ = ["DEFAULT_EMBEDDER", "Embedder", "Index"]

DEFAULT_EMBEDDER = "minilm"


class Embedder(DocumentEmbedder, Protocol):
    def embed_query(self, text: str) -> npt.NDArray[np.float32]: ...


class Index:
    """Ingest into and search one index directory.

    ``store`` is where the source of truth lives: by default ``DIR/lamina.sqlite``; a
    ``postgresql://`` DSN for a :class:`~lamina.retrieval.store.postgres.PostgresStore` (in
    its default schema), or any store instance (which the index then owns and closes).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        store: IndexStore | str | None = None,
        embedder: Embedder | str | None = None,
        create: bool = True,
        chunk_tokens: int = 128,
        chunk_overlap: int = 16,
        fusion: Fusion = "convex",
        alpha: float = 0.5,
        reranker: Reranker | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.settings = settings or get_settings()
        self.store = _open_store(store, self.directory, create=create)
        self._embedder_arg = embedder
        self._embedder: Embedder | None = None
        self.chunker = Chunker(max_tokens=chunk_tokens, overlap=chunk_overlap)
        self._searcher: Searcher | None = None
        self._search_options: dict[str, Any] = {
            "fusion": fusion,
            "alpha": alpha,
            "reranker": reranker,
        }
        self.router_threshold = ROUTER_THRESHOLD
        self._router: SemanticRouter | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder given, else the one this index was built with, else MiniLM."""
        if self._embedder is None:
            given = self._embedder_arg
            if given is None or isinstance(given, str):
                from lamina.models.embeddings import get_embedder

                spec = given or self.store.get_meta("embedder_spec") or DEFAULT_EMBEDDER
                self._embedder = get_embedder(spec, settings=self.settings)
                if self.store.get_meta("embedder_spec") is None:
                    self.store.set_meta("embedder_spec", spec)
            else:
                self._embedder = given
        return self._embedder

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            self._searcher = Searcher(
                self.store,
                self.embedder,
                cache_dir=self._cache_dir(),
                **self._search_options,
            )
        return self._searcher

    def _cache_dir(self) -> Path:
        # A PostgreSQL schema can be dropped and re-created, its generation starting over:
        # derived indexes are kept per store identity, so none outlives the store it came from.
        identity = self.store.get_meta("store_id")
        return self.directory / "derived" / (f"store-{identity}" if identity else "")

    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        collection: str = "default",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> IngestSummary:
        """Add, update and remove documents so the collection mirrors ``paths``."""
        ingestor = Ingestor(self.store, self.embedder, self.chunker, limits=self.settings.loaders)
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
        return self.searcher.search(
            query, k, mode=mode, filters=filters, mmr_lambda=mmr_lambda, candidates=candidates
        )

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
            or current.threshold != self.router_threshold
        ):
            current = SemanticRouter(routes, self.embedder, threshold=self.router_threshold)
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


def _open_store(store: IndexStore | str | None, directory: Path, *, create: bool) -> IndexStore:
    if store is None:
        return SQLiteStore(directory, create=create)
    if not isinstance(store, str):
        return store
    from lamina.retrieval.store.postgres import PostgresStore, is_dsn

    if not is_dsn(store):
        raise ConfigError(
            f"Unknown store {store!r}: give a PostgreSQL URI (postgresql://USER@HOST/DB), "
            f"or no store for the SQLite file in the index directory."
        )
    return PostgresStore(store, create=create)
