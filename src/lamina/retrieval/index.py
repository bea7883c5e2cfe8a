"""An index directory: the one object users open to ingest and search.

    >>> index = Index("my-index")                           # doctest: +SKIP
    >>> index.ingest(["docs/"], collection="docs")           # doctest: +SKIP
    >>> index.search("how do I install it?", k=5)            # doctest: +SKIP

``DIR/lamina.sqlite`` is the source of truth; ``DIR/derived/`` holds the BM25 and dense indexes
built from it (delete it at will: it is rebuilt on the next search). The embedder used to build
an index is recorded in it, so searching later embeds queries the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lamina.retrieval.chunking import Chunker
from lamina.retrieval.ingest import DocumentEmbedder, Ingestor, IngestSummary, Progress
from lamina.retrieval.search import Fusion, Mode, Reranker, Searcher
from lamina.retrieval.store.base import Filters, Hit
from lamina.retrieval.store.sqlite import SQLiteStore
from lamina.settings import Settings, get_settings

__all__ = ["DEFAULT_EMBEDDER", "Embedder", "Index"]

DEFAULT_EMBEDDER = "minilm"


class Embedder(DocumentEmbedder, Protocol):
    def embed_query(self, text: str) -> npt.NDArray[np.float32]: ...


class Index:
    """Ingest into and search one index directory."""

    def __init__(
        self,
        directory: str | Path,
        *,
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
        self.store = SQLiteStore(self.directory, create=create)
        self._embedder_arg = embedder
        self._embedder: Embedder | None = None
        self.chunker = Chunker(max_tokens=chunk_tokens, overlap=chunk_overlap)
        self._searcher: Searcher | None = None
        self._search_options: dict[str, Any] = {
            "fusion": fusion,
            "alpha": alpha,
            "reranker": reranker,
        }

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
                cache_dir=self.directory / "derived",
                **self._search_options,
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
        """Add, update and remove documents so the collection mirrors ``paths``."""
        ingestor = Ingestor(self.store, self.embedder, self.chunker)
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
        """The ``k`` best chunks for ``query``; see :meth:`Searcher.search`."""
        if collection is not None:
            filters = {**(filters or {}), "collection": collection}
        return self.searcher.search(
            query, k, mode=mode, filters=filters, mmr_lambda=mmr_lambda, candidates=candidates
        )

    def count(self, collection: str | None = None) -> tuple[int, int]:
        """(documents, chunks)."""
        return self.store.count(collection)

    def collections(self) -> list[str]:
        return self.store.collections()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
