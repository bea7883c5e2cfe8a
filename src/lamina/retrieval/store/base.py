"""The Store boundary: where chunks, their embeddings and their documents live, and where
they are searched.

A store is the source of truth, and search runs where the data lives: :meth:`Store.search_dense`
and :meth:`Store.search_sparse` return candidate keys with scores, filters pushed down, and the
:class:`~lamina.retrieval.search.Searcher` only fuses, diversifies and reranks those lists. The
SQLite store answers from local indexes it owns (derived from its data, rebuildable at any
time); the PostgreSQL store answers inside the database (pgvector HNSW, full-text search ranked
by BM25), so a process searching it holds no copy of the corpus. Rows are addressed by
``key``: an integer unique within a store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from lamina.retrieval.documents import Chunk, LoadedDocument

__all__ = ["Candidate", "Filters", "Hit", "IndexStore", "Snapshot", "Store", "StoredChunk"]

Vectors = npt.NDArray[np.float32]

#: Metadata filters: ``{"collection": "docs", "source": "a.md", "page": 3, "format": "pdf"}``.
#: Keys ``collection``, ``source``, ``document_id`` and ``page`` match those fields; any other
#: key matches the document's metadata. A list value matches any of its items.
Filters = Mapping[str, Any]


class StoredChunk(BaseModel):
    """A chunk as stored, with what a citation needs about its document."""

    model_config = ConfigDict(frozen=True)

    key: int
    collection: str
    chunk: Chunk
    source: str
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """A store's content at one generation, in the shape the derived indexes need.

    Row ``i`` of ``keys``, ``chunk_texts`` (title, headings and text) and ``vectors`` is one
    chunk; ``chunk_documents[i]`` is the row of its document in ``document_texts``.
    """

    generation: int
    keys: npt.NDArray[np.int64]
    chunk_documents: npt.NDArray[np.int64]
    chunk_texts: list[str]
    vectors: Vectors
    document_texts: list[str]


class Candidate(NamedTuple):
    """A chunk a first-stage search found: its key and its score in that search."""

    key: int
    score: float


class Hit(BaseModel):
    """A search result: the chunk, its final score and the score of each stage that saw it."""

    chunk: StoredChunk
    score: float
    scores: dict[str, float] = Field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.chunk.chunk.text


@runtime_checkable
class Store(Protocol):
    """Add, delete, get, count and search chunks.

    Filters (:data:`Filters`) mean the same in every method, and searches apply them where
    they search, never by dropping results afterwards, so a narrow filter still gets ``k``.
    """

    def add(
        self, collection: str, document: LoadedDocument, chunks: Sequence[Chunk], vectors: Vectors
    ) -> None:
        """Replace the document (by id) with these chunks, atomically."""

    def add_many(
        self, collection: str, items: Sequence[tuple[LoadedDocument, Sequence[Chunk], Vectors]]
    ) -> None:
        """Several :meth:`add` in one transaction: all land or none do."""

    def delete(self, collection: str, document_ids: Sequence[str]) -> int:
        """Remove documents and their chunks; returns how many documents went."""

    def get(self, keys: Sequence[int]) -> list[StoredChunk]:
        """The chunks with these keys, in the same order (missing keys are skipped)."""

    def sources(self, collection: str) -> dict[str, tuple[str, str]]:
        """``source -> (document id, content hash)`` for one collection."""

    def count(self, collection: str | None = None) -> tuple[int, int]:
        """(documents, chunks), in one collection or in all."""

    def collections(self) -> list[str]: ...

    def generation(self) -> int:
        """A number that changes with every committed write: derived indexes compare it."""

    def snapshot(self) -> Snapshot:
        """Every chunk and document as of one moment: what derived indexes are built from."""

    def matching(self, filters: Filters) -> set[int]:
        """The keys of chunks that match the filters."""

    def search_dense(
        self, vector: Vectors, k: int, filters: Filters | None = None
    ) -> list[Candidate]:
        """The ``k`` chunks (matching ``filters``) whose vectors have the highest inner product
        with ``vector`` (the cosine, for the unit vectors Lamina's embedders make), best first.
        May be approximate (an ANN index); fewer than ``k`` only if fewer chunks match."""

    def search_sparse(self, query: str, k: int, filters: Filters | None = None) -> list[Candidate]:
        """The ``k`` chunks (matching ``filters``) with the best lexical evidence for
        ``query``, best first; only chunks with some evidence (score above 0)."""

    def vectors(self, keys: Sequence[int]) -> Vectors:
        """The stored vectors of these chunks, one row each, in the order given."""

    def reading(self) -> AbstractContextManager[None]:
        """A block in which this thread's reads (searches, ``get``) all see one moment of the
        store, even while others write: a hybrid search never mixes two versions."""

    def refresh(self) -> None:
        """Bring search up to date with the data now (local indexes: build or catch up);
        a no-op where search runs in the database. Searches do this by themselves."""


@runtime_checkable
class IndexStore(Store, Protocol):
    """A Store that also keeps an index's settings and its ingestion journal: what ``Index``
    and ``Ingestor`` need. ``SQLiteStore`` and ``PostgresStore`` are both one."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def begin_run(self) -> int:
        """Record an ingest run; an earlier 'running' one was interrupted (its work is safe)."""

    def end_run(self, run: int, summary: dict[str, Any], status: str = "done") -> None: ...

    def runs(self) -> list[dict[str, Any]]: ...

    def document_text(self, collection: str, document_id: str) -> str | None: ...

    def ingest_lock(self, wait_s: float = 0.0) -> AbstractContextManager[None]:
        """Held for a whole ingest run: a second ingest into the same index waits up to
        ``wait_s`` seconds for it, then raises :class:`~lamina.retrieval.errors.IndexBusyError`
        naming the holder. Released when the holder ends, even if it is killed."""

    def close(self) -> None: ...
