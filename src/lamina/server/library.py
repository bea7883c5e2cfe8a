"""The server's documents: one index, the uploaded files, and who may see what.

Layout under ``server.data_dir`` (``$LAMINA_HOME/server`` by default)::

    index/                       the Index (lamina.sqlite + derived search indexes)
    files/TENANT/COLLECTION/NAME the uploaded files, as ingested (a document's source)
    staging/JOB/                 uploads waiting for their ingest job
    library.sqlite               which collections an admin shared
    jobs.sqlite                  ingest jobs (lamina.server.jobs)

Every route reaches documents through :class:`Library`, and every method takes the caller's
:class:`~lamina.server.tenancy.Tenant`: a collection or a document outside what the tenant may
see is :class:`~lamina.server.tenancy.NotFoundError`, the same answer as for an id that does not
exist. Only the public :class:`~lamina.retrieval.index.Index` API and the store protocol are
used (ingest with progress, search, sources, document_text, matching/get, delete).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.errors import InvalidRequestError
from lamina.retrieval.index import Embedder, Index
from lamina.retrieval.ingest import IngestSummary, Progress
from lamina.retrieval.search import Mode
from lamina.retrieval.store.base import Filters, Hit
from lamina.server.tenancy import (
    ForbiddenError,
    NotFoundError,
    Tenant,
    check_collection,
    internal_name,
    split_internal,
)
from lamina.settings import Settings

__all__ = ["CollectionInfo", "DocumentInfo", "Library", "ScopedIndex"]

#: Most characters of a document one text request returns.
MAX_SPAN_CHARS = 20_000
_MIGRATIONS = [
    """
    CREATE TABLE shares (
        collection TEXT PRIMARY KEY,
        shared_by TEXT NOT NULL,
        created REAL NOT NULL
    );
    """,
]


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as one tenant sees it: ``name`` is how that tenant names it."""

    name: str
    stored: str
    own: bool
    shared: bool
    documents: int
    chunks: int


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    name: str
    collection: str
    own: bool
    size: int | None
    added: float | None


class ScopedIndex(Index):
    """An :class:`Index` narrowed to some collections: what a RAG pipeline or an agent's
    ``search_documents`` gets, so no search can reach another tenant's documents.

    A view, not a second index: it shares the base index's store, embedder and search
    indexes (``Index.__init__`` is not called on purpose; every attribute but ``search``
    and ``embedder`` is the base's).
    """

    def __init__(self, base: Index, collections: Sequence[str]) -> None:
        self._base = base
        self._names = list(collections)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    @property
    def embedder(self) -> Embedder:
        return self._base.embedder

    @property
    def collection_names(self) -> list[str]:
        return list(self._names)

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
        names = self._names if collection is None else [c for c in self._names if c == collection]
        if not names:
            return []
        return self._base.search(
            query,
            k,
            mode=mode,
            filters={**(filters or {}), "collection": names},
            mmr_lambda=mmr_lambda,
            candidates=candidates,
        )

    def close(self) -> None:
        """The base index is the library's: a view closes nothing."""


class Library:
    """Documents and collections of every tenant, in one index under ``data_dir``."""

    def __init__(self, settings: Settings, *, embedder: Embedder | str | None = None) -> None:
        self.settings = settings
        self.root = settings.server.data_dir or settings.home / "server"
        self._embedder = embedder
        self._index: Index | None = None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    # -- storage ----------------------------------------------------------------------------

    @property
    def index(self) -> Index:
        with self._lock:
            if self._index is None:
                self._index = Index(
                    self.root / "index", embedder=self._embedder, settings=self.settings
                )
            return self._index

    @property
    def files_root(self) -> Path:
        path = self.root / "files"
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()  # documents are named by resolved path

    def staging(self, job_id: str) -> Path:
        path = self.root / "staging" / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def file_path(self, stored: str, name: str) -> Path:
        """Where an uploaded file of collection ``stored`` lives (its folder is created)."""
        owner, short = split_internal(stored) or ("", "")
        if not owner:
            raise InvalidRequestError(f"{stored!r} is not a collection of this server.")
        folder = self.files_root / owner / short
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def display_name(self, source: str) -> str:
        """What a client sees of a source: the uploaded file's name (``#record`` kept), never
        the server's paths.

        ``/data/files/k-0123456789abcdef/docs/a.md#7`` -> ``a.md#7``
        """
        prefix = str(self.files_root) + "/"
        if source.startswith(prefix):
            return source[len(prefix) :].split("/", 2)[-1]
        return Path(source.split("#", 1)[0]).name + (
            "#" + source.split("#", 1)[1] if "#" in source else ""
        )

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.root / "library.sqlite", check_same_thread=False, isolation_level=None
            )
            db.execute("PRAGMA busy_timeout=5000")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                db.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")
            self._db = db
        return self._db

    def _shared(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._conn().execute("SELECT collection FROM shares")}

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- what a tenant sees -----------------------------------------------------------------

    def _exists(self) -> bool:
        return (self.root / "index" / "lamina.sqlite").exists()

    def _stored_collections(self) -> list[str]:
        return self.index.collections() if self._exists() else []

    def visible(self, tenant: Tenant) -> dict[str, str]:
        """Name as the tenant says it -> stored name: its own collections, then shared ones."""
        shared = self._shared()
        own: dict[str, str] = {}
        others: dict[str, str] = {}
        for stored in self._stored_collections():
            parts = split_internal(stored)
            if parts is None:
                continue
            if parts[0] == tenant.id:
                own[parts[1]] = stored
            elif stored in shared:
                others[stored] = stored
        return {**own, **others}

    def collections(self, tenant: Tenant) -> list[CollectionInfo]:
        shared = self._shared()
        found = []
        for name, stored in self.visible(tenant).items():
            documents, chunks = self.index.count(stored)
            found.append(
                CollectionInfo(
                    name=name,
                    stored=stored,
                    own=(split_internal(stored) or ("",))[0] == tenant.id,
                    shared=stored in shared,
                    documents=documents,
                    chunks=chunks,
                )
            )
        return found

    def resolve(self, tenant: Tenant, name: str) -> str:
        """The stored name of a collection the tenant may read (404 otherwise)."""
        visible = self.visible(tenant)
        if name in visible:
            return visible[name]
        if "/" not in name:
            check_collection(name)
        raise NotFoundError(
            f"No collection {name!r}. Your collections: "
            f"{', '.join(visible) or 'none yet (upload with POST /v1/documents)'}."
        )

    def writable(self, tenant: Tenant, name: str) -> str:
        """The stored name of the tenant's own collection ``name`` (created on first upload);
        a collection another key shared is readable but not writable (403)."""
        if "/" in name:
            stored = self.resolve(tenant, name)
            if (split_internal(stored) or ("",))[0] != tenant.id:
                raise ForbiddenError(
                    f"The collection {name!r} was shared with you by another key: you may read "
                    f"it, not change it. Upload into a collection of your own."
                )
            return stored
        return internal_name(tenant, name)

    def scope(self, tenant: Tenant, collection: str | None) -> list[str]:
        """The stored collections a question searches: one, or all the tenant may read."""
        if collection is not None:
            return [self.resolve(tenant, collection)]
        return list(self.visible(tenant).values())

    def view(self, names: Sequence[str]) -> ScopedIndex:
        return ScopedIndex(self.index, names)

    def searchable(self, names: Sequence[str]) -> bool:
        return any(self.index.count(n)[1] > 0 for n in names)

    # -- documents --------------------------------------------------------------------------

    def documents(self, tenant: Tenant, collection: str | None = None) -> list[DocumentInfo]:
        visible = self.visible(tenant)
        if collection is not None:
            stored = self.resolve(tenant, collection)
            visible = {collection: stored}
        found = []
        for name, stored in visible.items():
            own = (split_internal(stored) or ("",))[0] == tenant.id
            for source, (doc_id, _) in sorted(self.index.store.sources(stored).items()):
                path = Path(source.split("#", 1)[0])
                try:
                    stat = path.stat()
                    size, added = stat.st_size, stat.st_mtime
                except OSError:
                    size, added = None, None
                found.append(
                    DocumentInfo(doc_id, self.display_name(source), name, own, size, added)
                )
        return found

    def find(self, tenant: Tenant, document_id: str) -> tuple[str, str, str]:
        """(name the tenant uses for its collection, stored collection, source) of a document
        the tenant may read; NotFoundError for any other id."""
        for name, stored in self.visible(tenant).items():
            for source, (doc_id, _) in self.index.store.sources(stored).items():
                if doc_id == document_id:
                    return name, stored, source
        raise NotFoundError(f"No document {document_id[:64]!r}. GET /v1/documents lists yours.")

    def text(
        self, tenant: Tenant, document_id: str, start: int | None, end: int | None, context: int
    ) -> dict[str, Any]:
        """The span ``[start, end)`` of a document's text, ``context`` characters either
        side, and the PDF page it starts on."""
        name, stored, source = self.find(tenant, document_id)
        text = self.index.store.document_text(stored, document_id)
        if text is None:
            raise NotFoundError(f"No document {document_id[:64]!r}.")
        length = len(text)
        begin = 0 if start is None else start
        stop = min(length, begin + 2000) if end is None else end
        if not 0 <= begin <= stop <= length:
            raise InvalidRequestError(
                f"The span start={start}, end={end} is outside the document, which is "
                f"{length} characters long: give 0 <= start <= end <= {length}."
            )
        if stop - begin > MAX_SPAN_CHARS:
            raise InvalidRequestError(
                f"The span is {stop - begin} characters; at most {MAX_SPAN_CHARS} are returned "
                f"at once. Ask for a shorter span."
            )
        before = max(0, begin - context)
        after = min(length, stop + context)
        return {
            "document_id": document_id,
            "name": self.display_name(source),
            "collection": name,
            "length": length,
            "start": begin,
            "end": stop,
            "page": self._page(stored, document_id, begin),
            "text": text[begin:stop],
            "before": text[before:begin],
            "after": text[stop:after],
        }

    def _page(self, stored: str, document_id: str, offset: int) -> int | None:
        store = self.index.store
        keys = sorted(store.matching({"collection": stored, "document_id": document_id}))
        page = None
        for chunk in store.get(keys):
            if chunk.chunk.page is None:
                return None
            if chunk.chunk.start <= offset:
                page = chunk.chunk.page
            if chunk.chunk.start <= offset < chunk.chunk.end:
                return chunk.chunk.page
        return page

    def delete(self, tenant: Tenant, document_id: str) -> dict[str, Any]:
        name, stored, source = self.find(tenant, document_id)
        if (split_internal(stored) or ("",))[0] != tenant.id:
            raise ForbiddenError(
                f"The document {document_id!r} is in {name!r}, which another key shared with "
                f"you: only its owner can delete it."
            )
        self.index.store.delete(stored, [document_id])
        path = Path(source.split("#", 1)[0])
        if path.is_file() and str(path).startswith(str(self.files_root) + "/"):
            path.unlink()
        return {"id": document_id, "object": "document", "deleted": True}

    # -- sharing ----------------------------------------------------------------------------

    def share(self, tenant: Tenant, name: str, shared: bool) -> CollectionInfo:
        """Share (or stop sharing) one of an admin tenant's own collections with every key."""
        if not tenant.admin or tenant.key is None:
            raise ForbiddenError(
                "Only an admin key shares collections (`lamina keys create NAME --admin`)."
            )
        stored = self.writable(tenant, name)
        if stored not in self._stored_collections():
            raise NotFoundError(f"No collection {name!r} with documents in it to share.")
        with self._lock:
            db = self._conn()
            if shared:
                db.execute(
                    "INSERT OR REPLACE INTO shares VALUES (?, ?, ?)",
                    (stored, tenant.key, time.time()),
                )
            else:
                db.execute("DELETE FROM shares WHERE collection = ?", (stored,))
        documents, chunks = self.index.count(stored)
        return CollectionInfo(name, stored, True, shared, documents, chunks)

    # -- ingest (called by the job worker) --------------------------------------------------

    def ingest(self, stored: str, path: Path, progress: Progress | None = None) -> IngestSummary:
        return self.index.ingest([path], collection=stored, progress=progress)
