"""The scale-out store: PostgreSQL with pgvector, behind the same interface as ``SQLiteStore``.

    >>> store = PostgresStore("postgresql://me@db.internal/lamina")   # doctest: +SKIP
    >>> index = Index("cache-dir", store=store)                      # doctest: +SKIP
    >>> store.search_dense(index.embedder.embed_query("install"), k=5)  # doctest: +SKIP

Everything a store holds lives in one PostgreSQL schema (``lamina`` unless told), so one
database can hold several indexes. The semantics are SQLiteStore's, test for test (the shared
contract suite runs against both): every write is one transaction that also bumps the
generation counter; writers serialise on a transaction-level advisory lock, as SQLite writers
do on its write lock, while readers never wait; :meth:`PostgresStore.snapshot` reads in one
REPEATABLE READ transaction.

The schema evolves by ordered migrations (``MIGRATIONS``), each recorded in
``schema_migrations``; never by ad-hoc DDL. A migration that mentions ``{dimension}`` needs the
embedding size, which a store learns from its first vectors: it runs (with the ones after it)
inside the transaction of the first write that brings vectors, so ``chunks.embedding`` becomes
``vector(d)`` and gets its HNSW index before the first row lands.

Chunks and documents go in with binary ``COPY``. :meth:`PostgresStore.search_dense` searches
in the database (HNSW, or exact when filtered) without loading every vector, while
``snapshot()`` still feeds the shared ``Searcher`` exactly as SQLite's does.
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from lamina.errors import ConfigError, MissingDependencyError
from lamina.retrieval.documents import Chunk, LoadedDocument
from lamina.retrieval.store.base import Filters, Hit, Snapshot, StoredChunk, Vectors
from lamina.retrieval.store.sqlite import _json_key
from lamina.settings import Settings

if TYPE_CHECKING:
    import psycopg

__all__ = ["DEFAULT_SCHEMA", "MIGRATIONS", "PostgresStore"]

DEFAULT_SCHEMA = "lamina"

MIGRATIONS: list[str] = [
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
]

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_DOCUMENT_COLUMNS = "collection, id, source, title, content_hash, metadata, text"
_DOCUMENT_TYPES = ["text", "text", "text", "text", "text", "jsonb", "text"]
_CHUNK_COLUMNS = (
    'collection, id, document_id, position, text, context, page, heading_path, start, "end", '
    "embedding"
)
# The embedding goes as bytes in pgvector's binary layout: in a binary COPY the server decodes
# each field with its column's receive function, so no client-side vector type is needed.
_CHUNK_TYPES = [
    "text", "text", "text", "int4", "text", "text", "int4", "text[]", "int4", "int4", "bytea"
]  # fmt: skip

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
    must be installed on the server; it is created in the database if missing.
    """

    def __init__(self, dsn: str, *, schema: str = DEFAULT_SCHEMA, create: bool = True) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"Schema name {schema!r} is not usable: use lowercase letters, digits and '_' "
                f"(at most 63), starting with a letter or '_'."
            )
        self.dsn = dsn
        self.schema = schema
        self._psycopg = _psycopg()
        self._lock = threading.RLock()
        self._db = self._connect(autocommit=True)
        try:
            self._dimension = self._migrate(create)
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def from_url(cls, url: str, *, directory: Path, create: bool, settings: Settings) -> Self:
        """A ``postgresql://`` (or ``postgres://``) URI: the store in its default schema;
        ``directory`` then holds only the derived search indexes."""
        return cls(url, create=create)

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

    def _connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        pg = self._psycopg
        try:
            connection: psycopg.Connection[Any] = pg.connect(self.dsn, autocommit=autocommit)
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
        """Run the pending migrations in order, stopping at one that needs an unknown dimension."""
        (version,) = self._one("SELECT coalesce(max(version), 0) FROM schema_migrations")
        if version > len(MIGRATIONS):
            raise ConfigError(
                f"The index in {self.location!r} has schema version {version}, newer than this "
                f"Lamina knows ({len(MIGRATIONS)}). Upgrade Lamina."
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            if "{dimension}" in script:
                if dimension is None:
                    return
                script = script.replace("{dimension}", str(int(dimension)))
            self._db.execute(script)
            self._db.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))

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
        self._db.close()

    # -- settings of the index ------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
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
                    )
                )
        with cursor.copy(f"COPY chunks ({_CHUNK_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_CHUNK_TYPES)
            for loaded, chunks, matrix in items:
                doc = loaded.document
                header = struct.pack(">HH", matrix.shape[1] if matrix.ndim == 2 else 0, 0)
                big_endian = matrix.astype(">f4")
                for position, chunk in enumerate(chunks):
                    copy.write_row(
                        (
                            collection,
                            chunk.id,
                            doc.id,
                            position,
                            chunk.text,
                            chunk.contextual_text(doc.title),
                            chunk.page,
                            chunk.heading_path,
                            chunk.start,
                            chunk.end,
                            header + big_endian[position].tobytes(),
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
        with self._lock:
            rows = self._db.execute(
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
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_STORED_COLUMNS} FROM {_JOIN} WHERE c.key = ANY(%s::bigint[])",
                (wanted,),
            ).fetchall()
        found = {row[0]: _stored(row) for row in rows}
        return [found[k] for k in wanted if k in found]

    def document_text(self, collection: str, document_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text FROM documents WHERE collection = %s AND id = %s",
                (collection, document_id),
            ).fetchone()
        return None if row is None else str(row[0])

    def sources(self, collection: str) -> dict[str, tuple[str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source, id, content_hash FROM documents WHERE collection = %s",
                (collection,),
            ).fetchall()
        return {source: (doc_id, digest) for source, doc_id, digest in rows}

    def count(self, collection: str | None = None) -> tuple[int, int]:
        where, args = ("WHERE collection = %s", (collection,)) if collection else ("", ())
        with self._lock, self._db.transaction():
            (docs,) = self._one(f"SELECT count(*) FROM documents {where}", args)
            (chunks,) = self._one(f"SELECT count(*) FROM chunks {where}", args)
        return int(docs), int(chunks)

    def collections(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
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
        with self._lock:
            rows = self._db.execute(f"SELECT c.key FROM {_JOIN} WHERE {where}", args).fetchall()
        return {r[0] for r in rows}

    # -- dense search in the database -------------------------------------------------------------

    def search_dense(
        self,
        vector: npt.NDArray[np.float32],
        k: int = 10,
        filters: Filters | None = None,
        *,
        exact: bool | None = None,
        ef_search: int = 100,
    ) -> list[Hit]:
        """The ``k`` chunks nearest ``vector`` by inner product (cosine for normalised vectors),
        searched in PostgreSQL without loading the vectors.

        Unfiltered searches use the HNSW index (``ef_search`` candidates, at least ``k``);
        filtered ones, or ``exact=True``, compute every matching distance, since HNSW filters
        after its search and could return fewer than ``k``. An approximate search that comes
        back short is redone exactly. Each hit's ``scores`` holds its ``"dense"`` score.
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
        approximate = not filters if exact is None else not exact
        with self._lock, self._db.transaction():
            rows: list[tuple[Any, ...]] = []
            if approximate:
                self._db.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true)",
                    (str(min(max(ef_search, k), 1000)),),
                )
                rows = self._db.execute(
                    "SELECT key, -(embedding <#> %s::vector) FROM chunks "
                    "ORDER BY embedding <#> %s::vector LIMIT %s",
                    (literal, literal, k),
                ).fetchall()
            if not approximate or len(rows) < k:
                where, args = _where(filters or {})
                # MATERIALIZED: every matching distance is computed; no index can cut corners.
                rows = self._db.execute(
                    "WITH scored AS MATERIALIZED (SELECT c.key, c.embedding <#> %s::vector AS d "
                    f"FROM {_JOIN} WHERE {where}) "
                    "SELECT key, -d FROM scored ORDER BY d, key LIMIT %s",
                    (literal, *args, k),
                ).fetchall()
        stored = {c.key: c for c in self.get([int(r[0]) for r in rows])}
        return [
            Hit(chunk=stored[key], score=float(score), scores={"dense": float(score)})
            for key, score in rows
            if key in stored
        ]

    def _recorded_dimension_now(self) -> int | None:
        with self._lock:
            return self._recorded_dimension()


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
