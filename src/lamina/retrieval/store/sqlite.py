"""The embedded store: one SQLite file, the source of truth of an index directory.

Documents, chunks (with their exact offsets, page and heading path), embeddings and the
ingestion journal live in ``DIR/lamina.sqlite``. Every write is one transaction, so a process
killed at any point (even with SIGKILL) leaves the last committed state: the next ingest
compares content hashes and redoes only what never landed. WAL mode lets readers search while
a writer ingests. The schema evolves by ordered migrations (``MIGRATIONS``), recorded in
``PRAGMA user_version``; never by ad-hoc ``ALTER``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from lamina.errors import ConfigError
from lamina.retrieval.documents import Chunk, LoadedDocument
from lamina.retrieval.store.base import Filters, Snapshot, StoredChunk, Vectors
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
]


class SQLiteStore:
    """An index directory's source of truth. Safe to share between threads of one process."""

    def __init__(self, directory: Path | str, *, create: bool = True) -> None:
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
        self._migrate()

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
        return cls(Path(path) if path else directory, create=create)

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
        self._db.close()

    # -- settings of the index ------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
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
            rows = self._db.execute(
                f"SELECT c.key, c.collection, c.id, c.document_id, c.text, c.page, "
                f'c.heading_path, c.start, c."end", d.source, d.title, d.metadata '
                f"FROM chunks c JOIN documents d "
                f"ON d.collection = c.collection AND d.id = c.document_id "
                f"WHERE c.key IN ({marks})",
                batch,
            ).fetchall()
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
        row = self._db.execute(
            "SELECT text FROM documents WHERE collection = ? AND id = ?", (collection, document_id)
        ).fetchone()
        return None if row is None else str(row[0])

    def sources(self, collection: str) -> dict[str, tuple[str, str]]:
        rows = self._db.execute(
            "SELECT source, id, content_hash FROM documents WHERE collection = ?", (collection,)
        )
        return {source: (doc_id, digest) for source, doc_id, digest in rows}

    def count(self, collection: str | None = None) -> tuple[int, int]:
        where, args = ("WHERE collection = ?", (collection,)) if collection else ("", ())
        (docs,) = self._db.execute(f"SELECT count(*) FROM documents {where}", args).fetchone()
        (chunks,) = self._db.execute(f"SELECT count(*) FROM chunks {where}", args).fetchone()
        return int(docs), int(chunks)

    def collections(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT collection FROM documents ORDER BY 1")
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
        dimension = len(blobs[0]) // 4 if blobs else 0
        vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dimension)
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
        rows = self._db.execute(
            "SELECT c.key FROM chunks c JOIN documents d "
            f"ON d.collection = c.collection AND d.id = c.document_id WHERE {where}",
            args,
        )
        return {r[0] for r in rows}


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _json_key(name: str) -> str:
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"Filter key {name!r} may only hold letters, digits, '_' and '-'.")
    return name


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
