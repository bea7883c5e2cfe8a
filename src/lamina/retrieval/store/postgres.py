"""The scale-out store: PostgreSQL with pgvector, behind the same interface as ``SQLiteStore``,
searched inside the database.

    >>> store = PostgresStore("postgresql://me@db.internal/lamina")   # doctest: +SKIP
    >>> index = Index("cache-dir", store=store)                      # doctest: +SKIP
    >>> store.search_dense(index.embedder.embed_query("install"), k=5)  # doctest: +SKIP

Everything a store holds lives in one PostgreSQL schema (``lamina`` unless told), so one
database can hold several indexes. The semantics are SQLiteStore's, test for test (the shared
contract suite runs against both): every write is one transaction that also bumps the
generation counter; writers serialise on a transaction-level advisory lock, as SQLite writers
do on its write lock, while readers never wait; :meth:`PostgresStore.reading` and
:meth:`PostgresStore.snapshot` read in one REPEATABLE READ transaction.

Search needs nothing in memory, so any number of stateless processes can serve one store:

- dense: pgvector's HNSW index (``vector_ip_ops``; ``ef_search`` candidates, at least k), a
  filter applied in the same query; when the filter leaves fewer than k, every matching
  vector is compared exactly;
- sparse: PostgreSQL full-text search ranked by BM25. Each document and chunk stores a
  ``tsvector`` of the same terms SQLite's local BM25 indexes (:func:`~lamina.retrieval.
  derived.bm25.terms`), with a term's frequency as its positions, and its length; triggers keep
  document frequencies and corpus sizes in ``term_stats`` / ``corpus_stats``. A query matches
  through the GIN index and scores every match with Lucene's BM25, so rankings equal the local
  ones (a term more than 256 times in one text counts 256 times: a tsvector's limit).

The schema evolves by ordered migrations (``MIGRATIONS``), each recorded in
``schema_migrations``; never by ad-hoc DDL. A migration that mentions ``{dimension}`` needs the
embedding size, which a store learns from its first vectors: it waits (the ones after it do
not) and runs inside the transaction of the first write that brings vectors, so
``chunks.embedding`` becomes ``vector(d)`` and gets its HNSW index before the first row lands.
A migration may also be a function, for what SQL alone cannot do (terms computed in Python).

Chunks and documents go in with binary ``COPY``. One ingest at a time writes to a store:
:meth:`PostgresStore.ingest_lock` is a session-level advisory lock, released by the server
when its holder's connection ends.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from lamina.errors import ConfigError, MissingDependencyError
from lamina.retrieval.derived.bm25 import terms
from lamina.retrieval.documents import Chunk, LoadedDocument
from lamina.retrieval.errors import IndexBusyError
from lamina.retrieval.store.base import Candidate, Filters, Snapshot, StoredChunk, Vectors
from lamina.retrieval.store.sqlite import _json_key
from lamina.settings import Settings

if TYPE_CHECKING:
    import psycopg

__all__ = ["DEFAULT_SCHEMA", "MIGRATIONS", "PostgresStore"]

DEFAULT_SCHEMA = "lamina"

#: A migration: SQL, or a function run with the store inside the migration's transaction.
Migration = str | Callable[["PostgresStore"], None]

MIGRATIONS: list[Migration] = [
    # 1: documents, chunks, the ingestion journal and settings of the index. Times are
    # timestamptz (runs() reports them as epoch seconds, as SQLite does); store_id tells a
    # re-created schema from the one it replaced (derived-index caches are kept per store_id).
    """
    CREATE TABLE documents (
        collection   text NOT NULL,
        id           text NOT NULL,
        source       text NOT NULL,
        title        text,
        content_hash text NOT NULL,
        metadata     jsonb NOT NULL,
        text         text NOT NULL,
        added        timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (collection, id)
    );
    CREATE INDEX documents_source ON documents (collection, source);
    CREATE TABLE chunks (
        key          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        collection   text NOT NULL,
        id           text NOT NULL,
        document_id  text NOT NULL,
        position     integer NOT NULL,
        text         text NOT NULL,
        context      text NOT NULL,
        page         integer,
        heading_path text[] NOT NULL,
        start        integer NOT NULL,
        "end"        integer NOT NULL,
        embedding    vector NOT NULL,
        UNIQUE (collection, id),
        FOREIGN KEY (collection, document_id) REFERENCES documents (collection, id)
            ON DELETE CASCADE
    );
    CREATE INDEX chunks_document ON chunks (collection, document_id);
    CREATE TABLE ingest_runs (
        id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        started  timestamptz NOT NULL,
        finished timestamptz,
        status   text NOT NULL,
        summary  jsonb
    );
    CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
    INSERT INTO meta VALUES ('generation', '0'), ('store_id', gen_random_uuid()::text);
    """,
    # 2: the embedding size, known from the first vectors; runs while chunks is still empty.
    # Lamina's embedders L2-normalise, so the inner product is the cosine.
    """
    ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dimension});
    CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_ip_ops);
    """,
    # 3: full-text search ranked by BM25. ``lexemes`` holds a text's BM25 terms with their
    # frequencies as positions (1..tf), ``length`` its number of terms; statement triggers
    # keep each term's document frequency and each level's size and total length, in the
    # transaction that changes the rows. Functions resolve tables with the search path of
    # their creation (this schema first), whoever fires them.
    """
    ALTER TABLE documents ADD COLUMN lexemes tsvector NOT NULL DEFAULT '',
        ADD COLUMN length integer NOT NULL DEFAULT 0;
    ALTER TABLE chunks ADD COLUMN lexemes tsvector NOT NULL DEFAULT '',
        ADD COLUMN length integer NOT NULL DEFAULT 0;
    CREATE INDEX documents_lexemes ON documents USING gin (lexemes);
    CREATE INDEX chunks_lexemes ON chunks USING gin (lexemes);
    CREATE TABLE term_stats (
        level text NOT NULL,
        term  text NOT NULL,
        df    bigint NOT NULL,
        PRIMARY KEY (level, term)
    );
    CREATE TABLE corpus_stats (
        level  text PRIMARY KEY,
        rows   bigint NOT NULL,
        length bigint NOT NULL
    );
    INSERT INTO corpus_stats VALUES ('documents', 0, 0), ('chunks', 0, 0);
    CREATE FUNCTION count_terms() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            INSERT INTO term_stats (level, term, df)
                SELECT TG_ARGV[0], u.lexeme, -count(*) FROM old_rows, unnest(old_rows.lexemes) u
                GROUP BY u.lexeme
            ON CONFLICT (level, term) DO UPDATE SET df = term_stats.df + EXCLUDED.df;
            UPDATE corpus_stats SET rows = rows - o.n, length = length - o.l
                FROM (SELECT count(*) AS n, coalesce(sum(old_rows.length), 0) AS l FROM old_rows) o
                WHERE level = TG_ARGV[0];
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO term_stats (level, term, df)
                SELECT TG_ARGV[0], u.lexeme, count(*) FROM new_rows, unnest(new_rows.lexemes) u
                GROUP BY u.lexeme
            ON CONFLICT (level, term) DO UPDATE SET df = term_stats.df + EXCLUDED.df;
            UPDATE corpus_stats SET rows = rows + o.n, length = length + o.l
                FROM (SELECT count(*) AS n, coalesce(sum(new_rows.length), 0) AS l FROM new_rows) o
                WHERE level = TG_ARGV[0];
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER documents_added AFTER INSERT ON documents REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION count_terms('documents');
    CREATE TRIGGER documents_removed AFTER DELETE ON documents REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION count_terms('documents');
    CREATE TRIGGER documents_changed AFTER UPDATE ON documents
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION count_terms('documents');
    CREATE TRIGGER chunks_added AFTER INSERT ON chunks REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION count_terms('chunks');
    CREATE TRIGGER chunks_removed AFTER DELETE ON chunks REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION count_terms('chunks');
    CREATE TRIGGER chunks_changed AFTER UPDATE ON chunks
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION count_terms('chunks');
    """,
    # 4: the terms of rows stored before migration 3 (none in a new store).
    lambda store: store._index_terms(),
]

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_DOCUMENT_COLUMNS = "collection, id, source, title, content_hash, metadata, text, lexemes, length"
# The embedding and the lexemes go as bytes in pgvector's and PostgreSQL's binary layouts: in a
# binary COPY the server decodes each field with its column's receive function, so no
# client-side vector or tsvector type is needed.
_DOCUMENT_TYPES = ["text", "text", "text", "text", "text", "jsonb", "text", "bytea", "int4"]
_CHUNK_COLUMNS = (
    'collection, id, document_id, position, text, context, page, heading_path, start, "end", '
    "embedding, lexemes, length"
)
_CHUNK_TYPES = [
    "text", "text", "text", "int4", "text", "text", "int4", "text[]", "int4", "int4", "bytea",
    "bytea", "int4",
]  # fmt: skip

#: BM25 parameters, as the local index (and bm25s, and Lucene) use them.
K1, B = 1.5, 0.75
#: (key1, key2) of the session advisory lock an ingest holds: "LAMI" and the schema's CRC.
_INGEST_LOCK = 0x4C414D49

_STORED_COLUMNS = (
    'c.key, c.collection, c.id, c.document_id, c.text, c.page, c.heading_path, c.start, c."end", '
    "d.source, d.title, d.metadata"
)
_JOIN = "chunks c JOIN documents d ON d.collection = c.collection AND d.id = c.document_id"


def _psycopg() -> Any:
    """psycopg, imported on first use: PostgreSQL is an optional extra."""
    try:
        import psycopg
    except ImportError as exc:
        raise MissingDependencyError("psycopg[binary]", "postgres") from exc
    return psycopg


class PostgresStore:
    """An index's source of truth in PostgreSQL. Safe to share between threads of one process.

    ``dsn`` is a libpq connection string or URI; ``schema`` names the PostgreSQL schema that
    holds this index (created on first use unless ``create`` is false). The pgvector extension
    must be installed on the server; it is created in the database if missing. ``ef_search``:
    the candidates an HNSW search keeps (at least k).

    Searches (inside :meth:`reading`, as the Searcher does) run on a connection of the calling
    thread's own, so threads search in parallel; other reads and writes share one connection.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        create: bool = True,
        ef_search: int = 100,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"Schema name {schema!r} is not usable: use lowercase letters, digits and '_' "
                f"(at most 63), starting with a letter or '_'."
            )
        self.dsn = dsn
        self.schema = schema
        self.ef_search = ef_search
        self._psycopg = _psycopg()
        self._lock = threading.RLock()
        self._pin = threading.local()  # this thread's read transaction, inside reading()
        self._readers: list[psycopg.Connection[Any]] = []
        self._db = self._connect(autocommit=True)
        try:
            self._dimension = self._migrate(create)
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def from_url(cls, url: str, *, directory: Path, create: bool, settings: Settings) -> Self:
        """A ``postgresql://`` (or ``postgres://``) URI: the store in its default schema
        (``directory`` is not used: nothing about the index is kept on local disk)."""
        return cls(url, create=create, ef_search=settings.retrieval.ef_search)

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r}, schema={self.schema!r})"

    @property
    def location(self) -> str:
        """Where this store lives, without any password: ``host:port/dbname#schema``."""
        try:
            parts = self._psycopg.conninfo.conninfo_to_dict(self.dsn)
        except self._psycopg.ProgrammingError:
            parts = {}
        host = parts.get("host") or "localhost"
        port = f":{parts['port']}" if parts.get("port") else ""
        return f"{host}{port}/{parts.get('dbname') or parts.get('user') or ''}#{self.schema}"

    def _connect(self, *, autocommit: bool, **options: str) -> psycopg.Connection[Any]:
        pg = self._psycopg
        try:
            connection: psycopg.Connection[Any] = pg.connect(
                self.dsn, autocommit=autocommit, **options
            )
        except pg.OperationalError as exc:
            raise ConfigError(
                f"Cannot connect to PostgreSQL for the store in schema {self.schema!r}: "
                f"{str(exc).strip()}. Check the DSN and that the server is running."
            ) from exc
        # Our schema first, then whatever the server configured (where pgvector's type lives).
        schema = pg.sql.Identifier(self.schema).as_string(connection)
        connection.execute(
            "SELECT set_config('search_path', %s || ', ' || current_setting('search_path'), false)",
            (schema,),
        )
        return connection

    # -- schema ---------------------------------------------------------------------------------

    def _migrate(self, create: bool) -> int | None:
        with self._lock, self._db.transaction():
            self._serialise()
            if self._table("schema_migrations") is None:
                if not create:
                    raise ConfigError(
                        f"No Lamina index in {self.location!r}. Create one with "
                        f"`lamina ingest PATH --index DIR --store DSN`."
                    )
                self._ensure_pgvector()
                ident = self._psycopg.sql.Identifier(self.schema)
                self._db.execute(
                    self._psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident)
                )
                self._db.execute(
                    self._psycopg.sql.SQL(
                        "CREATE TABLE {}.schema_migrations (version integer PRIMARY KEY, "
                        "applied timestamptz NOT NULL DEFAULT now())"
                    ).format(ident)
                )
            self._apply(dimension=None)
            return self._recorded_dimension()

    def _apply(self, dimension: int | None) -> None:
        """Run the pending migrations in order; one that needs the embedding size waits while
        it is unknown (the others do not wait for it)."""
        applied = {row[0] for row in self._db.execute("SELECT version FROM schema_migrations")}
        if applied and max(applied) > len(MIGRATIONS):
            raise ConfigError(
                f"The index in {self.location!r} has schema version {max(applied)}, newer than "
                f"this Lamina knows ({len(MIGRATIONS)}). Upgrade Lamina."
            )
        for number, migration in enumerate(MIGRATIONS, start=1):
            if number in applied:
                continue
            if isinstance(migration, str):
                if "{dimension}" in migration:
                    if dimension is None:
                        continue
                    migration = migration.replace("{dimension}", str(int(dimension)))
                self._db.execute(migration)
            else:
                migration(self)
            self._db.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))

    def _index_terms(self) -> None:
        """Fill ``lexemes`` and ``length`` of rows written before they existed (migration 4);
        the update triggers count their terms."""
        for table, text in (
            ("documents", "coalesce(title, '') || ' ' || text"),
            ("chunks", "context"),
        ):
            key = "collection, id"
            rows = self._db.execute(
                f"SELECT {key}, {text} FROM {table} WHERE length = 0"
            ).fetchall()
            if not rows:
                continue
            self._db.execute(
                "CREATE TEMPORARY TABLE lamina_terms (collection text, id text, "
                "lexemes tsvector, length int4) ON COMMIT DROP"
            )
            with self._db.cursor().copy("COPY lamina_terms FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "bytea", "int4"])
                for collection, ident, body in rows:
                    words = terms(body)
                    copy.write_row((collection, ident, _tsvector(words), len(words)))
            self._db.execute(
                f"UPDATE {table} t SET lexemes = n.lexemes, length = n.length "
                "FROM lamina_terms n WHERE t.collection = n.collection AND t.id = n.id"
            )
            self._db.execute("DROP TABLE lamina_terms")

    def _ensure_pgvector(self) -> None:
        if self._one("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")[0]:
            return
        try:
            with self._db.transaction():
                self._db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except self._psycopg.Error as exc:
            raise ConfigError(
                f"The PostgreSQL database of {self.location!r} lacks the pgvector extension and "
                f"it could not be created ({str(exc).strip()}). Install pgvector on the server "
                f"and run `CREATE EXTENSION vector;` there as a superuser."
            ) from exc

    def _table(self, name: str) -> str | None:
        (found,) = self._one("SELECT to_regclass(%s)::text", (f"{self.schema}.{name}",))
        return None if found is None else str(found)

    def _recorded_dimension(self) -> int | None:
        (typmod,) = self._one(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) "
            "AND attname = 'embedding'",
            (f"{self.schema}.chunks",),
        )
        return int(typmod) if typmod and typmod > 0 else None

    def _serialise(self) -> None:
        """Take this index's write lock until the transaction ends."""
        self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lamina:{self.schema}",))

    def _one(self, query: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
        row = self._db.execute(query, args).fetchone()
        assert row is not None, query
        return tuple(row)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._db.close()

    # -- reads: pinned to one transaction per thread, or on the shared connection ----------------

    def _reader(self) -> psycopg.Connection[Any]:
        """This thread's read connection: REPEATABLE READ, read only (re-made if it broke)."""
        reader: psycopg.Connection[Any] | None = getattr(self._pin, "reader", None)
        if reader is None or reader.closed:
            reader = self._connect(autocommit=False)
            reader.commit()  # end the transaction that set the search path
            reader.isolation_level = self._psycopg.IsolationLevel.REPEATABLE_READ
            reader.read_only = True
            self._pin.reader = reader
            with self._lock:
                self._readers = [r for r in self._readers if not r.closed] + [reader]
        return reader

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One REPEATABLE READ transaction, on this thread's connection, for the block."""
        if getattr(self._pin, "conn", None) is not None:
            yield  # already inside one
            return
        reader = self._reader()
        try:
            with reader.transaction():
                self._pin.conn = reader
                try:
                    yield
                finally:
                    self._pin.conn = None
        except self._psycopg.OperationalError:
            reader.close()  # a broken connection is made again on the next read
            raise

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a transaction: the pinned one, else the shared one (locked)."""
        pinned: psycopg.Connection[Any] | None = getattr(self._pin, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self._lock, self._db.transaction():
            yield self._db

    def refresh(self) -> None:
        """Nothing to do: search runs in the database, on what it holds now."""

    # -- settings of the index ------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (key, value),
            )

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
        matrices = [_matrix(chunks, vectors) for _, chunks, vectors in items]
        dimension = self._dimension_of(matrices)
        with self._lock:
            with self._db.transaction():
                self._serialise()
                if dimension is not None and self._dimension is None:
                    self._apply(dimension)  # the first vectors fix the embedding size
                    self._check_dimension(dimension, self._recorded_dimension())
                self._replace(collection, _last_wins(items, matrices))
                self._bump()
            if dimension is not None:
                self._dimension = dimension

    def _dimension_of(self, matrices: list[npt.NDArray[np.float32]]) -> int | None:
        sizes = {m.shape[1] for m in matrices if len(m)}
        if len(sizes) > 1:
            raise ConfigError(
                f"Vectors of several dimensions in one write: {sorted(sizes)}. Embed every "
                f"chunk with the same embedder."
            )
        dimension = sizes.pop() if sizes else None
        if dimension is not None and self._dimension is not None:
            self._check_dimension(dimension, self._dimension)
        return dimension

    def _check_dimension(self, given: int, stored: int | None) -> None:
        if stored is not None and given != stored:
            raise ConfigError(
                f"{given}-dimensional vectors, but the store in {self.location!r} holds "
                f"{stored}-dimensional ones: use the embedder it was built with, or a new schema."
            )

    def _replace(
        self,
        collection: str,
        items: list[tuple[LoadedDocument, Sequence[Chunk], npt.NDArray[np.float32]]],
    ) -> None:
        # A changed file keeps its id (derived from the source), so replace it whole.
        ids = [loaded.document.id for loaded, _, _ in items]
        sources = [loaded.document.source for loaded, _, _ in items]
        self._db.execute(
            "DELETE FROM documents WHERE collection = %s "
            "AND (id = ANY(%s::text[]) OR source = ANY(%s::text[]))",
            (collection, ids, sources),
        )
        cursor = self._db.cursor()
        with cursor.copy(
            f"COPY documents ({_DOCUMENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_DOCUMENT_TYPES)
            for loaded, _, _ in items:
                doc = loaded.document
                copy.write_row(
                    (
                        collection,
                        doc.id,
                        doc.source,
                        doc.title,
                        doc.content_hash,
                        json.loads(json.dumps(doc.metadata)),  # what SQLite's JSON text holds
                        loaded.text,
                        _tsvector(words := terms(f"{doc.title or ''} {loaded.text}")),
                        len(words),
                    )
                )
        with cursor.copy(f"COPY chunks ({_CHUNK_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_CHUNK_TYPES)
            for loaded, chunks, matrix in items:
                doc = loaded.document
                header = struct.pack(">HH", matrix.shape[1] if matrix.ndim == 2 else 0, 0)
                big_endian = matrix.astype(">f4")
                for position, chunk in enumerate(chunks):
                    context = chunk.contextual_text(doc.title)
                    words = terms(context)
                    copy.write_row(
                        (
                            collection,
                            chunk.id,
                            doc.id,
                            position,
                            chunk.text,
                            context,
                            chunk.page,
                            chunk.heading_path,
                            chunk.start,
                            chunk.end,
                            header + big_endian[position].tobytes(),
                            _tsvector(words),
                            len(words),
                        )
                    )

    def delete(self, collection: str, document_ids: Sequence[str]) -> int:
        if not document_ids:
            return 0
        with self._lock, self._db.transaction():
            self._serialise()
            removed = self._db.execute(
                "DELETE FROM documents WHERE collection = %s AND id = ANY(%s::text[])",
                (collection, list(document_ids)),
            ).rowcount
            self._bump()
        return max(removed, 0)

    def _bump(self) -> None:
        self._db.execute(
            "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation'"
        )

    # -- the ingestion journal ------------------------------------------------------------------

    def begin_run(self) -> int:
        """Record an ingest run; an earlier 'running' one was interrupted (its work is safe)."""
        with self._lock, self._db.transaction():
            self._db.execute(
                "UPDATE ingest_runs SET status = 'interrupted' WHERE status = 'running'"
            )
            (run,) = self._one(
                "INSERT INTO ingest_runs (started, status) VALUES (clock_timestamp(), 'running') "
                "RETURNING id"
            )
        return int(run)

    def end_run(self, run: int, summary: dict[str, Any], status: str = "done") -> None:
        with self._lock:
            self._db.execute(
                "UPDATE ingest_runs SET finished = clock_timestamp(), status = %s, "
                "summary = %s::jsonb WHERE id = %s",
                (status, json.dumps(summary), run),
            )

    def runs(self) -> list[dict[str, Any]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT id, extract(epoch FROM started)::float8, "
                "extract(epoch FROM finished)::float8, status, summary "
                "FROM ingest_runs ORDER BY id"
            ).fetchall()
        return [
            {"id": r[0], "started": r[1], "finished": r[2], "status": r[3], "summary": r[4]}
            for r in rows
        ]

    # -- reads ----------------------------------------------------------------------------------

    def get(self, keys: Sequence[int]) -> list[StoredChunk]:
        if not keys:
            return []
        wanted = [int(k) for k in keys]
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_STORED_COLUMNS} FROM {_JOIN} WHERE c.key = ANY(%s::bigint[])",
                (wanted,),
            ).fetchall()
        found = {row[0]: _stored(row) for row in rows}
        return [found[k] for k in wanted if k in found]

    def document_text(self, collection: str, document_id: str) -> str | None:
        with self._read() as db:
            row = db.execute(
                "SELECT text FROM documents WHERE collection = %s AND id = %s",
                (collection, document_id),
            ).fetchone()
        return None if row is None else str(row[0])

    def sources(self, collection: str) -> dict[str, tuple[str, str]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT source, id, content_hash FROM documents WHERE collection = %s",
                (collection,),
            ).fetchall()
        return {source: (doc_id, digest) for source, doc_id, digest in rows}

    def count(self, collection: str | None = None) -> tuple[int, int]:
        where, args = ("WHERE collection = %s", (collection,)) if collection else ("", ())
        with self._read() as db:
            docs = db.execute(f"SELECT count(*) FROM documents {where}", args).fetchone()
            chunks = db.execute(f"SELECT count(*) FROM chunks {where}", args).fetchone()
        assert docs is not None and chunks is not None
        return int(docs[0]), int(chunks[0])

    def collections(self) -> list[str]:
        with self._read() as db:
            rows = db.execute(
                'SELECT DISTINCT collection COLLATE "C" FROM documents ORDER BY 1'
            ).fetchall()
        return [r[0] for r in rows]

    def snapshot(self) -> Snapshot:
        """Every chunk and document as of one moment, even while others write."""
        with self._connect(autocommit=False) as reader:
            reader.commit()  # end the transaction that set the search path
            reader.isolation_level = self._psycopg.IsolationLevel.REPEATABLE_READ
            reader.read_only = True
            with reader.transaction():
                (generation,) = reader.execute(
                    "SELECT value::bigint FROM meta WHERE key = 'generation'"
                ).fetchone() or (0,)
                # Binary collation, as SQLite orders: the same rows get the same numbers.
                documents = reader.execute(
                    "SELECT collection, id, coalesce(title, ''), text FROM documents "
                    'ORDER BY collection COLLATE "C", id COLLATE "C"'
                ).fetchall()
                doc_row = {(c, i): n for n, (c, i, _, _) in enumerate(documents)}
                keys: list[int] = []
                chunk_docs: list[int] = []
                texts: list[str] = []
                blobs: list[bytes] = []
                # A server-side cursor streams the rows; binary, so vectors arrive as raw bytes.
                with reader.cursor(name="lamina_snapshot", binary=True) as cursor:
                    cursor.execute(
                        "SELECT key, collection, document_id, context, embedding FROM chunks "
                        "ORDER BY key"
                    )
                    while rows := cursor.fetchmany(4096):
                        for key, collection, doc_id, context, blob in rows:
                            keys.append(key)
                            chunk_docs.append(doc_row[(collection, doc_id)])
                            texts.append(context)
                            blobs.append(blob)
        return Snapshot(
            generation=int(generation),
            keys=np.asarray(keys, dtype=np.int64),
            chunk_documents=np.asarray(chunk_docs, dtype=np.int64),
            chunk_texts=texts,
            vectors=_decode_vectors(blobs),
            document_texts=[f"{title} {text}".strip() for _, _, title, text in documents],
        )

    def matching(self, filters: Filters) -> set[int]:
        where, args = _where(filters)
        with self._read() as db:
            rows = db.execute(f"SELECT c.key FROM {_JOIN} WHERE {where}", args).fetchall()
        return {r[0] for r in rows}

    # -- search in the database ----------------------------------------------------------------

    def search_dense(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        filters: Filters | None = None,
        *,
        exact: bool | None = None,
        ef_search: int | None = None,
    ) -> list[Candidate]:
        """The ``k`` chunks nearest ``vector`` by inner product (cosine for unit vectors),
        searched in PostgreSQL without loading the vectors.

        The HNSW index keeps ``ef_search`` (default: the store's; at least ``k``, at most
        pgvector's 1000) candidates and the filter is applied in the same query; when that
        leaves fewer than ``k`` (a narrow filter: HNSW filters after its search), every
        matching vector is compared exactly. ``exact=True`` always compares them all.
        """
        if k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self._dimension is None:
            self._dimension = self._recorded_dimension_now()
            if self._dimension is None:
                return []  # nothing with a vector has been stored yet
        self._check_dimension(len(query), self._dimension)
        literal = "[" + ",".join(repr(float(x)) for x in query) + "]"
        where, args = _where(filters or {})
        source = _JOIN if filters else "chunks c"
        rows: list[tuple[Any, ...]] = []
        with self._read() as db:
            if not exact:
                ef = min(max(ef_search or self.ef_search, k), 1000)
                db.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
                rows = db.execute(
                    f"SELECT c.key, -(c.embedding <#> %s::vector) FROM {source} WHERE {where} "
                    "ORDER BY c.embedding <#> %s::vector LIMIT %s",
                    (literal, *args, literal, k),
                ).fetchall()
            if exact or len(rows) < k:
                # MATERIALIZED: every matching distance is computed; no index can cut corners.
                rows = db.execute(
                    "WITH scored AS MATERIALIZED (SELECT c.key, c.embedding <#> %s::vector AS d "
                    f"FROM {source} WHERE {where}) "
                    "SELECT key, -d FROM scored ORDER BY d, key LIMIT %s",
                    (literal, *args, k),
                ).fetchall()
        return [Candidate(int(key), float(score)) for key, score in rows]

    def search_sparse(self, query: str, k: int, filters: Filters | None = None) -> list[Candidate]:
        """BM25 evidence, computed in PostgreSQL: each chunk scores its document's BM25 over
        the best document's, plus a tenth of its own BM25 over the best chunk's, as the local
        indexes do (:meth:`~lamina.retrieval.derived.local.LocalIndexes.search_sparse`).

        Matches come from the GIN indexes on ``lexemes``; a term's frequency in a text is the
        number of its positions there; document frequencies and lengths come from the stats
        tables; the filter restricts the matches (a document counts when one of its chunks
        passes), never the statistics.
        """
        counted = Counter(terms(query))
        if k <= 0 or not counted:
            return []
        words, weights = list(counted), [float(n) for n in counted.values()]
        tsquery = " | ".join("'" + w.replace("'", "''") + "'" for w in words)
        where, args = _where(filters or {})
        chunk_source = _JOIN if filters else "chunks c"
        document_filter = (
            "AND EXISTS (SELECT 1 FROM chunks c WHERE c.collection = d.collection AND "
            f"c.document_id = d.id AND {where})"
            if filters
            else ""
        )
        candidates_filter = (
            f"JOIN documents d ON d.collection = c.collection AND d.id = c.document_id "
            f"WHERE {where}"
            if filters
            else ""
        )
        sql = f"""
WITH q AS (SELECT * FROM unnest(%s::text[], %s::float8[]) AS q(term, weight)),
stats AS (SELECT level, rows::float8 AS n,
                 CASE WHEN rows > 0 THEN length::float8 / rows ELSE 1 END AS avgdl
          FROM corpus_stats),
idf AS (SELECT t.level, q.term, q.weight * ln(1 + (s.n - t.df + 0.5) / (t.df + 0.5)) AS w
        FROM q JOIN term_stats t ON t.term = q.term AND t.df > 0
        JOIN stats s ON s.level = t.level),
doc AS (
    SELECT d.collection, d.id,
           sum(i.w * u.tf / (u.tf + {K1} * (1 - {B} + {B} * d.length / s.avgdl))) AS s
    FROM documents d
    CROSS JOIN LATERAL (
        SELECT f.lexeme, cardinality(f.positions)::float8 AS tf
        FROM unnest(ts_filter(setweight(d.lexemes, 'A', %s::text[]), '{{a}}')) f) u
    JOIN idf i ON i.level = 'documents' AND i.term = u.lexeme
    JOIN stats s ON s.level = 'documents'
    WHERE d.lexemes @@ %s::tsquery {document_filter}
    GROUP BY d.collection, d.id),
chunk AS (
    SELECT c.key, c.collection, c.document_id,
           sum(i.w * u.tf / (u.tf + {K1} * (1 - {B} + {B} * c.length / s.avgdl))) AS s
    FROM {chunk_source}
    CROSS JOIN LATERAL (
        SELECT f.lexeme, cardinality(f.positions)::float8 AS tf
        FROM unnest(ts_filter(setweight(c.lexemes, 'A', %s::text[]), '{{a}}')) f) u
    JOIN idf i ON i.level = 'chunks' AND i.term = u.lexeme
    JOIN stats s ON s.level = 'chunks'
    WHERE c.lexemes @@ %s::tsquery AND {where}
    GROUP BY c.key, c.collection, c.document_id),
tops AS (SELECT (SELECT max(s) FROM doc) AS td, (SELECT max(s) FROM chunk) AS tc),
candidate AS (
    SELECT c.key, c.collection, c.document_id
    FROM (SELECT c.* FROM doc JOIN chunks c
          ON c.collection = doc.collection AND c.document_id = doc.id) c
    {candidates_filter}
    UNION
    SELECT key, collection, document_id FROM chunk)
SELECT candidate.key,
       coalesce(doc.s, 0) / tops.td
       + CASE WHEN tops.tc > 0 THEN 0.1 * coalesce(chunk.s, 0) / tops.tc ELSE 0 END AS score
FROM candidate CROSS JOIN tops
LEFT JOIN doc ON doc.collection = candidate.collection AND doc.id = candidate.document_id
LEFT JOIN chunk ON chunk.key = candidate.key
WHERE tops.td > 0
ORDER BY score DESC, candidate.key
LIMIT %s"""
        params: list[Any] = [words, weights, words, tsquery]
        if filters:
            params.extend(args)  # the document filter
        params.extend([words, tsquery, *args])
        if filters:
            params.extend(args)  # the candidates' filter
        params.append(k)
        with self._read() as db:
            rows = db.execute(sql, params).fetchall()
        return [Candidate(int(key), float(score)) for key, score in rows if score > 0]

    def vectors(self, keys: Sequence[int]) -> Vectors:
        wanted = [int(k) for k in keys]
        if not wanted:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        with self._read() as db, db.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT key, embedding FROM chunks WHERE key = ANY(%s::bigint[])", (wanted,)
            )
            found = {int(key): bytes(blob) for key, blob in cursor.fetchall()}
        missing = [k for k in wanted if k not in found]
        if missing:
            raise KeyError(f"no chunks with the keys {missing[:5]}")
        return _decode_vectors([found[k] for k in wanted])

    def _recorded_dimension_now(self) -> int | None:
        with self._lock:
            return self._recorded_dimension()

    # -- one ingest at a time -----------------------------------------------------------------

    @contextmanager
    def ingest_lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """A session-level advisory lock on a connection of its own, held for the run; the
        server drops it when that connection ends (the holder exits or dies)."""
        me = f"lamina ingest: pid {os.getpid()} on {socket.gethostname()}"
        holder = self._connect(autocommit=True, application_name=me[:63])
        key = zlib.crc32(self.schema.encode()) & 0x7FFFFFFF
        deadline = time.monotonic() + wait_s
        try:
            while True:
                row = holder.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (_INGEST_LOCK, key)
                ).fetchone()
                if row and row[0]:
                    break
                if time.monotonic() >= deadline:
                    raise IndexBusyError(repr(self.location), self._lock_holder(key), wait_s)
                time.sleep(0.05)
            try:
                yield
            finally:
                holder.execute("SELECT pg_advisory_unlock(%s, %s)", (_INGEST_LOCK, key))
        finally:
            holder.close()

    def _lock_holder(self, key: int) -> str:
        with self._lock:
            row = self._db.execute(
                "SELECT a.application_name, a.client_addr::text, "
                "to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS') "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s "
                "AND l.objid = %s AND l.objsubid = 2",
                (_INGEST_LOCK, key),
            ).fetchone()
        if row is None:
            return "a session that has just ended"
        name, address, since = row
        where = f" from {address}" if address else ""
        return f"{name or 'a session'}{where}, connected since {since}"


def _matrix(chunks: Sequence[Chunk], vectors: Vectors) -> npt.NDArray[np.float32]:
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        if matrix.size:
            raise ValueError(f"vectors must be a 2-D array, not of shape {matrix.shape}")
        matrix = matrix.reshape(0, 0)
    return matrix


def _last_wins(
    items: Sequence[tuple[LoadedDocument, Sequence[Chunk], Vectors]],
    matrices: list[npt.NDArray[np.float32]],
) -> list[tuple[LoadedDocument, Sequence[Chunk], npt.NDArray[np.float32]]]:
    """The items that survive, as if each replaced the earlier ones with its id or source.

    SQLite applies the items one by one; here one DELETE and two COPYs do the whole batch, so
    an item that a later one in the same batch replaces must not be written at all.
    """
    later_ids: set[str] = set()
    later_sources: set[str] = set()
    kept = []
    for (loaded, chunks, _), matrix in zip(reversed(items), reversed(matrices), strict=True):
        doc = loaded.document
        if doc.id not in later_ids and doc.source not in later_sources:
            kept.append((loaded, chunks, matrix))
        later_ids.add(doc.id)
        later_sources.add(doc.source)
    return kept[::-1]


#: PostgreSQL keeps at most 256 positions per lexeme and about 1 MB of lexemes per tsvector.
_MAX_POSITIONS = 256
_MAX_TSVECTOR_BYTES = 1_000_000


def _tsvector(words: Sequence[str]) -> bytes:
    """PostgreSQL's binary tsvector of ``words``: each distinct term with positions 1..tf.

    A text whose lexemes would pass PostgreSQL's 1 MB limit (a huge document of distinct
    words) keeps its most frequent terms (its length still counts every word).

    >>> _tsvector(["cat", "sat", "cat"]).hex()
    '00000002636174000002000100027361740000010001'
    """
    counts = Counter(words)
    entries: list[bytes] = []
    budget = _MAX_TSVECTOR_BYTES
    for word, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        n = min(count, _MAX_POSITIONS)
        entry = word.encode() + b"\0" + struct.pack(f">H{n}H", n, *range(1, n + 1))
        budget -= len(entry) + 8  # the lexeme's entry header and alignment
        if budget < 0:
            break
        entries.append(entry)
    return struct.pack(">i", len(entries)) + b"".join(entries)


def _decode_vectors(blobs: list[bytes]) -> Vectors:
    """pgvector's binary layout (uint16 dimension, uint16 unused, big-endian float32s) of many
    rows at once.

    >>> row = struct.pack(">HH", 2, 0) + np.array([0.5, -1], dtype=">f4").tobytes()
    >>> _decode_vectors([row, row]).tolist()
    [[0.5, -1.0], [0.5, -1.0]]
    """
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    (dimension,) = struct.unpack_from(">H", blobs[0])
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), 4 + 4 * dimension)
    floats = np.ascontiguousarray(raw[:, 4:]).view(">f4")
    return floats.astype(np.float32)


def _stored(row: Sequence[Any]) -> StoredChunk:
    return StoredChunk(
        key=row[0],
        collection=row[1],
        chunk=Chunk(
            id=row[2],
            document_id=row[3],
            text=row[4],
            page=row[5],
            heading_path=list(row[6]),
            start=row[7],
            end=row[8],
        ),
        source=row[9],
        title=row[10],
        metadata=row[11],
    )


_COLUMNS = {
    "collection": "c.collection",
    "source": "d.source",
    "document_id": "c.document_id",
    "page": "c.page",
}


def _where(filters: Filters) -> tuple[str, list[Any]]:
    """A WHERE clause (over ``_JOIN``) and its arguments, with SQLiteStore's matching rules.

    A list value matches any of its items; ``None`` matches nothing (SQL ``IN (NULL)``); a
    metadata value matches by JSON equality, as SQLite's ``json_extract`` compares scalars.
    """
    clauses: list[str] = []
    args: list[Any] = []
    for name, value in filters.items():
        given = value if isinstance(value, list | tuple | set) else [value]
        values = [v for v in given if v is not None]
        column = _COLUMNS.get(name)
        if column == "c.page":
            clauses.append("c.page = ANY(%s::bigint[])")
            args.append([p for p in (_as_int(v) for v in values) if p is not None])
        elif column is not None:
            clauses.append(f"{column} = ANY(%s::text[])")
            args.append([str(v) for v in values])
        else:
            clauses.append("(d.metadata -> %s) = ANY(%s::jsonb[])")
            args.extend([_json_key(name), [json.dumps(v) for v in values]])
    return " AND ".join(clauses) or "true", args


def _as_int(value: Any) -> int | None:
    """A page filter value as SQLite's INTEGER affinity would read it; None if it cannot be."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    return None
