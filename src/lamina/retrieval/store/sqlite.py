"""The embedded store: one SQLite file, the source of truth of an index directory.

Documents, chunks (with their exact offsets, page and heading path), embeddings and the
ingestion journal live in ``DIR/lamina.sqlite``. Every write is one transaction, so a process
killed at any point (even with SIGKILL) leaves the last committed state: the next ingest
compares content hashes and redoes only what never landed. WAL mode lets readers search while
a writer ingests; :meth:`SQLiteStore.reading` pins one read transaction for a whole search. The
schema evolves by ordered migrations (``MIGRATIONS``), recorded in ``PRAGMA user_version``;
never by ad-hoc ``ALTER``.

Search runs on local indexes the store owns (:class:`~lamina.retrieval.derived.local.
LocalIndexes`, saved under ``DIR/derived/``): triggers record every removed document and chunk
in a change log, so the indexes apply what changed instead of rebuilding. One ingest at a time
writes to an index: :meth:`SQLiteStore.ingest_lock` is an advisory lock on ``DIR/ingest.lock``,
which the system releases when its holder dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

from lamina.errors import ConfigError
from lamina.retrieval.derived.local import ANN_THRESHOLD, Changes, Cursor, LocalIndexes
from lamina.retrieval.documents import Chunk, LoadedDocument
from lamina.retrieval.errors import IndexBusyError
from lamina.retrieval.store.base import Candidate, Filters, Snapshot, StoredChunk, Vectors
from lamina.settings import Settings

__all__ = ["MIGRATIONS", "SQLiteStore"]

DB_NAME = "lamina.sqlite"

MIGRATIONS: list[str] = [
    # 1: documents, chunks, embeddings, the ingestion journal and settings of the index.
    """
    CREATE TABLE documents (
        collection   TEXT NOT NULL,
        id           TEXT NOT NULL,
        source       TEXT NOT NULL,
        title        TEXT,
        content_hash TEXT NOT NULL,
        metadata     TEXT NOT NULL,
        text         TEXT NOT NULL,
        added        REAL NOT NULL,
        PRIMARY KEY (collection, id)
    );
    CREATE INDEX documents_source ON documents (collection, source);
    CREATE TABLE chunks (
        key          INTEGER PRIMARY KEY AUTOINCREMENT,
        collection   TEXT NOT NULL,
        id           TEXT NOT NULL,
        document_id  TEXT NOT NULL,
        position     INTEGER NOT NULL,
        text         TEXT NOT NULL,
        context      TEXT NOT NULL,
        page         INTEGER,
        heading_path TEXT NOT NULL,
        start        INTEGER NOT NULL,
        "end"        INTEGER NOT NULL,
        embedding    BLOB NOT NULL,
        UNIQUE (collection, id),
        FOREIGN KEY (collection, document_id) REFERENCES documents (collection, id)
            ON DELETE CASCADE
    );
    CREATE INDEX chunks_document ON chunks (collection, document_id);
    CREATE TABLE ingest_runs (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        started  REAL NOT NULL,
        finished REAL,
        status   TEXT NOT NULL,
        summary  TEXT
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta VALUES ('generation', '0');
    """,
    # 2: the change log the local search indexes catch up from (new chunks need no entry:
    # their keys only grow), and an identity telling a re-created file from the one it replaced.
    """
    CREATE TABLE changes (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind         TEXT NOT NULL,
        collection   TEXT NOT NULL,
        document_id  TEXT NOT NULL,
        key          INTEGER
    );
    CREATE TRIGGER documents_added AFTER INSERT ON documents BEGIN
        INSERT INTO changes (kind, collection, document_id)
        VALUES ('document+', NEW.collection, NEW.id);
    END;
    CREATE TRIGGER documents_removed AFTER DELETE ON documents BEGIN
        INSERT INTO changes (kind, collection, document_id)
        VALUES ('document-', OLD.collection, OLD.id);
    END;
    CREATE TRIGGER chunks_removed AFTER DELETE ON chunks BEGIN
        INSERT INTO changes (kind, collection, document_id, key)
        VALUES ('chunk-', OLD.collection, OLD.document_id, OLD.key);
    END;
    INSERT INTO meta VALUES ('store_id', lower(hex(randomblob(8))));
    INSERT INTO meta VALUES ('changes_floor', '0');
    """,
]

#: The change log keeps at least this many entries; a reader further behind rebuilds.
LOG_ENTRIES = 1_000_000


class SQLiteStore:
    """An index directory's source of truth and its search. Safe to share between threads.

    ``ann_threshold``: chunks above which the local dense index is IVF instead of exact.
    """

    def __init__(
        self, directory: Path | str, *, create: bool = True, ann_threshold: int = ANN_THRESHOLD
    ) -> None:
        self.directory = Path(directory)
        path = self.directory / DB_NAME
        if not path.exists() and not create:
            raise ConfigError(
                f"No Lamina index at {str(self.directory)!r}. Create one with "
                f"`lamina ingest PATH --index {self.directory}`."
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._pin = threading.local()  # this thread's read transaction, inside reading()
        self._readers: list[sqlite3.Connection] = []
        self._migrate()
        derived = self.directory / "derived"
        for legacy in derived.glob("gen-*"):  # search indexes of Lamina before the change log
            shutil.rmtree(legacy, ignore_errors=True)
        self.local = LocalIndexes(
            self, derived / f"store-{self.get_meta('store_id')}", ann_threshold=ann_threshold
        )

    @classmethod
    def from_url(cls, url: str, *, directory: Path, create: bool, settings: Settings) -> Self:
        """``sqlite://PATH`` or a plain ``PATH`` names the directory; none, the index's own.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as index:
        ...     store = SQLiteStore.from_url(
        ...         f"sqlite://{index}/elsewhere", directory=Path(index), create=True,
        ...         settings=Settings())
        ...     store.close()
        ...     (Path(index) / "elsewhere" / DB_NAME).is_file()
        True
        """
        scheme, found, rest = url.partition("://")
        path = rest if found and scheme.lower() == "sqlite" else url
        return cls(
            Path(path) if path else directory,
            create=create,
            ann_threshold=settings.retrieval.ann_threshold,
        )

    def _migrate(self) -> None:
        with self._lock:
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version > len(MIGRATIONS):
                raise ConfigError(
                    f"The index at {str(self.directory)!r} has schema version {version}, newer "
                    f"than this Lamina knows ({len(MIGRATIONS)}). Upgrade Lamina."
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(script):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        self.local.close()
        for reader in self._readers:
            reader.close()
        self._db.close()

    def _reader(self) -> sqlite3.Connection:
        """This thread's own read connection (reads pinned by :meth:`reading` run on it)."""
        reader: sqlite3.Connection | None = getattr(self._pin, "reader", None)
        if reader is None:
            reader = sqlite3.connect(
                self.directory / DB_NAME, check_same_thread=False, isolation_level=None
            )
            reader.execute("PRAGMA busy_timeout=10000")
            self._pin.reader = reader
            self._readers.append(reader)
        return reader

    def _conn(self) -> sqlite3.Connection:
        """Where a read goes: the pinned transaction of :meth:`reading`, else the shared one."""
        pinned: sqlite3.Connection | None = getattr(self._pin, "conn", None)
        return pinned or self._db

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction and one view of the search indexes for this block."""
        if getattr(self._pin, "conn", None) is not None:
            yield  # already inside one
            return
        reader = self._reader()
        reader.execute("BEGIN")
        try:
            reader.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            self._pin.conn = reader
            with self.local.pinned():
                yield
        finally:
            self._pin.conn = None
            reader.execute("COMMIT")

    # -- settings of the index ------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- writes ---------------------------------------------------------------------------------

    def add(
        self, collection: str, document: LoadedDocument, chunks: Sequence[Chunk], vectors: Vectors
    ) -> None:
        self.add_many(collection, [(document, chunks, vectors)])

    def add_many(
        self, collection: str, items: Sequence[tuple[LoadedDocument, Sequence[Chunk], Vectors]]
    ) -> None:
        if not items:
            return
        with self._lock, self._transaction():
            for loaded, chunks, vectors in items:
                self._replace(collection, loaded, chunks, vectors)
            self._bump()

    def _replace(
        self, collection: str, loaded: LoadedDocument, chunks: Sequence[Chunk], vectors: Vectors
    ) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        doc = loaded.document
        # A changed file keeps its id (derived from the source), so replace it whole.
        self._db.execute(
            "DELETE FROM documents WHERE collection = ? AND (id = ? OR source = ?)",
            (collection, doc.id, doc.source),
        )
        self._db.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                collection,
                doc.id,
                doc.source,
                doc.title,
                doc.content_hash,
                json.dumps(doc.metadata),
                loaded.text,
                time.time(),
            ),
        )
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        self._db.executemany(
            "INSERT INTO chunks (collection, id, document_id, position, text, context, page, "
            'heading_path, start, "end", embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            [
                (
                    collection,
                    chunk.id,
                    doc.id,
                    position,
                    chunk.text,
                    chunk.contextual_text(doc.title),
                    chunk.page,
                    json.dumps(chunk.heading_path),
                    chunk.start,
                    chunk.end,
                    matrix[position].tobytes(),
                )
                for position, chunk in enumerate(chunks)
            ],
        )

    def delete(self, collection: str, document_ids: Sequence[str]) -> int:
        if not document_ids:
            return 0
        with self._lock, self._transaction():
            removed = 0
            for doc_id in document_ids:
                cursor = self._db.execute(
                    "DELETE FROM documents WHERE collection = ? AND id = ?", (collection, doc_id)
                )
                removed += cursor.rowcount
            self._bump()
        return removed

    def _bump(self) -> None:
        self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
        )
        # Trim the change log now and then (a reader behind the trimmed part rebuilds).
        (last,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
        (floor,) = self._db.execute(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'changes_floor'"
        ).fetchone()
        if last - floor > 2 * LOG_ENTRIES:
            self._db.execute("DELETE FROM changes WHERE seq <= ?", (last - LOG_ENTRIES,))
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'changes_floor'", (str(last - LOG_ENTRIES),)
            )

    @contextmanager
    def ingest_lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """One ingest at a time: an exclusive ``flock`` on ``DIR/ingest.lock`` (released by
        the system if the holder dies), with its holder written inside for the message."""
        path = self.directory / "ingest.lock"
        handle = path.open("a+", encoding="utf-8")
        deadline = time.monotonic() + wait_s
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        raise IndexBusyError(
                            repr(str(self.directory)), _holder(handle.read()), wait_s
                        ) from None
                    time.sleep(0.05)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(_me()))
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                handle.flush()
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # -- the ingestion journal ------------------------------------------------------------------

    def begin_run(self) -> int:
        """Record an ingest run; an earlier 'running' one was interrupted (its work is safe)."""
        with self._lock:
            self._db.execute(
                "UPDATE ingest_runs SET status = 'interrupted' WHERE status = 'running'"
            )
            cursor = self._db.execute(
                "INSERT INTO ingest_runs (started, status) VALUES (?, 'running')", (time.time(),)
            )
            return int(cursor.lastrowid or 0)

    def end_run(self, run: int, summary: dict[str, Any], status: str = "done") -> None:
        with self._lock:
            self._db.execute(
                "UPDATE ingest_runs SET finished = ?, status = ?, summary = ? WHERE id = ?",
                (time.time(), status, json.dumps(summary), run),
            )

    def runs(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, started, finished, status, summary FROM ingest_runs ORDER BY id"
        ).fetchall()
        return [
            {
                "id": r[0],
                "started": r[1],
                "finished": r[2],
                "status": r[3],
                "summary": json.loads(r[4]) if r[4] else None,
            }
            for r in rows
        ]

    # -- reads ----------------------------------------------------------------------------------

    def get(self, keys: Sequence[int]) -> list[StoredChunk]:
        if not keys:
            return []
        found: dict[int, StoredChunk] = {}
        for start in range(0, len(keys), 500):
            batch = list(keys[start : start + 500])
            marks = ",".join("?" * len(batch))
            rows = (
                self._conn()
                .execute(
                    f"SELECT c.key, c.collection, c.id, c.document_id, c.text, c.page, "
                    f'c.heading_path, c.start, c."end", d.source, d.title, d.metadata '
                    f"FROM chunks c JOIN documents d "
                    f"ON d.collection = c.collection AND d.id = c.document_id "
                    f"WHERE c.key IN ({marks})",
                    batch,
                )
                .fetchall()
            )
            for row in rows:
                found[row[0]] = StoredChunk(
                    key=row[0],
                    collection=row[1],
                    chunk=Chunk(
                        id=row[2],
                        document_id=row[3],
                        text=row[4],
                        page=row[5],
                        heading_path=json.loads(row[6]),
                        start=row[7],
                        end=row[8],
                    ),
                    source=row[9],
                    title=row[10],
                    metadata=json.loads(row[11]),
                )
        return [found[k] for k in keys if k in found]

    def document_text(self, collection: str, document_id: str) -> str | None:
        row = (
            self._conn()
            .execute(
                "SELECT text FROM documents WHERE collection = ? AND id = ?",
                (collection, document_id),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def sources(self, collection: str) -> dict[str, tuple[str, str]]:
        rows = self._conn().execute(
            "SELECT source, id, content_hash FROM documents WHERE collection = ?", (collection,)
        )
        return {source: (doc_id, digest) for source, doc_id, digest in rows}

    def count(self, collection: str | None = None) -> tuple[int, int]:
        where, args = ("WHERE collection = ?", (collection,)) if collection else ("", ())
        db = self._conn()
        (docs,) = db.execute(f"SELECT count(*) FROM documents {where}", args).fetchone()
        (chunks,) = db.execute(f"SELECT count(*) FROM chunks {where}", args).fetchone()
        return int(docs), int(chunks)

    def collections(self) -> list[str]:
        rows = self._conn().execute("SELECT DISTINCT collection FROM documents ORDER BY 1")
        return [r[0] for r in rows]

    def snapshot(self) -> Snapshot:
        """Every chunk and document as of one moment, even while others write."""
        reader = sqlite3.connect(self.directory / DB_NAME)
        try:
            reader.execute("BEGIN")  # one read transaction: one consistent snapshot
            (generation,) = reader.execute(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'"
            ).fetchone()
            documents = reader.execute(
                "SELECT collection, id, coalesce(title, ''), text FROM documents "
                "ORDER BY collection, id"
            ).fetchall()
            doc_row = {(c, i): n for n, (c, i, _, _) in enumerate(documents)}
            keys: list[int] = []
            chunk_docs: list[int] = []
            texts: list[str] = []
            blobs: list[bytes] = []
            cursor = reader.execute(
                "SELECT key, collection, document_id, context, embedding FROM chunks ORDER BY key"
            )
            while rows := cursor.fetchmany(4096):
                for key, collection, doc_id, context, blob in rows:
                    keys.append(key)
                    chunk_docs.append(doc_row[(collection, doc_id)])
                    texts.append(context)
                    blobs.append(blob)
            reader.execute("COMMIT")
        finally:
            reader.close()
        vectors = _decode(blobs)
        return Snapshot(
            generation=int(generation),
            keys=np.asarray(keys, dtype=np.int64),
            chunk_documents=np.asarray(chunk_docs, dtype=np.int64),
            chunk_texts=texts,
            vectors=vectors,
            document_texts=[f"{title} {text}".strip() for _, _, title, text in documents],
        )

    def matching(self, filters: Filters) -> set[int]:
        clauses: list[str] = []
        args: list[Any] = []
        columns = {
            "collection": "c.collection",
            "source": "d.source",
            "document_id": "c.document_id",
            "page": "c.page",
        }
        for name, value in filters.items():
            column = columns.get(name) or f"json_extract(d.metadata, '$.{_json_key(name)}')"
            values = value if isinstance(value, list | tuple | set) else [value]
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)
        where = " AND ".join(clauses) or "1"
        rows = self._conn().execute(
            "SELECT c.key FROM chunks c JOIN documents d "
            f"ON d.collection = c.collection AND d.id = c.document_id WHERE {where}",
            args,
        )
        return {r[0] for r in rows}

    # -- search -------------------------------------------------------------------------------

    def search_dense(
        self, vector: Vectors, k: int, filters: Filters | None = None
    ) -> list[Candidate]:
        """Exact inner product (IVF above ``ann_threshold`` chunks) on the local indexes."""
        return self.local.search_dense(vector, k, filters)

    def search_sparse(self, query: str, k: int, filters: Filters | None = None) -> list[Candidate]:
        """BM25 over documents and chunks on the local indexes (see
        :meth:`~lamina.retrieval.derived.local.LocalIndexes.search_sparse`)."""
        return self.local.search_sparse(query, k, filters)

    def vectors(self, keys: Sequence[int]) -> Vectors:
        found = self.local.vectors_of_keys(keys)
        if found is not None:
            return found
        blobs: dict[int, bytes] = {}
        for start in range(0, len(keys), 500):
            batch = [int(k) for k in keys[start : start + 500]]
            marks = ",".join("?" * len(batch))
            query = f"SELECT key, embedding FROM chunks WHERE key IN ({marks})"
            blobs.update(self._conn().execute(query, batch).fetchall())
        missing = [k for k in keys if int(k) not in blobs]
        if missing:
            raise KeyError(f"no chunks with the keys {missing[:5]}")
        return _decode([blobs[int(k)] for k in keys])

    def refresh(self) -> None:
        self.local.refresh()

    # -- the change log (for the local indexes) -------------------------------------------------

    def changes(self, since: Cursor | None) -> Changes:
        """What changed after ``since`` (everything for None), read in one transaction."""
        pinned = getattr(self._pin, "conn", None)
        if pinned is not None:
            return self._changes(pinned, since)
        reader = self._reader()
        reader.execute("BEGIN")
        try:
            return self._changes(reader, since)
        finally:
            reader.execute("COMMIT")

    def _changes(self, db: sqlite3.Connection, since: Cursor | None) -> Changes:
        (generation,) = db.execute(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'"
        ).fetchone()
        (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
        high = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        cursor = Cursor(int(generation), int(seq), int(high[0]) if high else 0)
        removed_documents: list[tuple[str, str]] = []
        removed_chunks: list[int] = []
        if since is None:
            documents = db.execute(
                "SELECT collection, id, coalesce(title, '') || ' ' || text FROM documents "
                "ORDER BY collection, id"
            ).fetchall()
            chunk_rows = db.execute(
                "SELECT key, collection, document_id, context, embedding FROM chunks ORDER BY key"
            )
        else:
            added: set[tuple[str, str]] = set()
            log = db.execute(
                "SELECT kind, collection, document_id, key FROM changes WHERE seq > ? ORDER BY seq",
                (since.seq,),
            )
            for kind, collection, document_id, key in log:
                if kind == "document+":
                    added.add((collection, document_id))
                elif kind == "document-":
                    removed_documents.append((collection, document_id))
                elif key <= since.max_key:  # a chunk added and removed since is no news
                    removed_chunks.append(int(key))
            documents = []
            for collection, document_id in sorted(added):
                row = db.execute(
                    "SELECT collection, id, coalesce(title, '') || ' ' || text FROM documents "
                    "WHERE collection = ? AND id = ?",
                    (collection, document_id),
                ).fetchone()
                if row is not None:  # else removed again since
                    documents.append(row)
            chunk_rows = db.execute(
                "SELECT key, collection, document_id, context, embedding FROM chunks "
                "WHERE key > ? ORDER BY key",
                (since.max_key,),
            )
        keys: list[int] = []
        owners: list[tuple[str, str]] = []
        texts: list[str] = []
        blobs: list[bytes] = []
        while rows := chunk_rows.fetchmany(4096):
            for key, collection, document_id, context, blob in rows:
                keys.append(key)
                owners.append((collection, document_id))
                texts.append(context)
                blobs.append(blob)
        return Changes(
            cursor=cursor,
            full=since is None,
            removed_documents=removed_documents,
            removed_chunks=removed_chunks,
            documents=[((c, i), text) for c, i, text in documents],
            keys=np.asarray(keys, dtype=np.int64),
            chunk_documents=owners,
            chunk_texts=texts,
            vectors=_decode(blobs),
        )

    def pending(self, since: Cursor) -> int | None:
        """Rows :meth:`changes` would bring after ``since``; None if the log was trimmed past
        it (or the file was replaced by an older one)."""
        db = self._conn()
        (floor,) = db.execute(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'changes_floor'"
        ).fetchone()
        if since.seq < floor:
            return None
        (logged,) = db.execute(
            "SELECT count(*) FROM changes WHERE seq > ?", (since.seq,)
        ).fetchone()
        (added,) = db.execute(
            "SELECT count(*) FROM chunks WHERE key > ?", (since.max_key,)
        ).fetchone()
        return int(logged) + int(added)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _decode(blobs: list[bytes]) -> Vectors:
    """float32 vectors stored as bytes, one row each."""
    dimension = len(blobs[0]) // 4 if blobs else 0
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dimension)


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}


def _holder(text: str) -> str:
    """Who holds an ingest lock, from what it wrote into the lock file."""
    try:
        found = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(found["since"])))
        return f"process {found['pid']} on {found['host']}, since {since}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"


def _json_key(name: str) -> str:
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"Filter key {name!r} may only hold letters, digits, '_' and '-'.")
    return name


def _statements(script: str) -> list[str]:
    """The statements of a migration script, triggers (with ``;`` inside) kept whole.

    >>> len(_statements("CREATE TABLE t (x); CREATE TRIGGER g AFTER INSERT ON t BEGIN "
    ...                 "DELETE FROM t; END; INSERT INTO t VALUES (1);"))
    3
    """
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    return statements
