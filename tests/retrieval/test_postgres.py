"""PostgresStore beyond the shared contract: migrations, search in the database, stateless
searching processes (no snapshot of the corpus), the Index and the BEIR bench on it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from lamina.errors import ConfigError, MissingDependencyError
from lamina.retrieval.index import Index
from lamina.retrieval.store.base import Hit
from lamina.retrieval.store.postgres import MIGRATIONS, PostgresStore
from lamina.testing import HashEmbedder
from lamina.testing.stores import item
from tests.retrieval.test_index import write_corpus


@pytest.fixture
def store(postgres_uri: str, pg_schema: str) -> Iterator[PostgresStore]:
    handle = PostgresStore(postgres_uri, schema=pg_schema)
    yield handle
    handle.close()


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lamina\[postgres\]'"):
        PostgresStore("postgresql://localhost/none")


def test_index_rejects_an_unknown_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown store 'mysql://x'"):
        Index(tmp_path / "idx", store="mysql://x", embedder=HashEmbedder())


@pytest.mark.integration
def test_migrations_are_ordered_recorded_and_wait_for_the_dimension(
    postgres_uri: str, pg_schema: str, store: PostgresStore
) -> None:
    def versions() -> list[int]:
        with psycopg.connect(postgres_uri) as db:
            rows = db.execute(f"SELECT version FROM {pg_schema}.schema_migrations ORDER BY 1")
            return [r[0] for r in rows]

    def column_type() -> str:
        with psycopg.connect(postgres_uri) as db:
            row = db.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (f"{pg_schema}.chunks",),
            ).fetchone()
            assert row is not None
            return str(row[0])

    # The dimension's migration (2) waits for the first vectors; the later ones do not.
    assert versions() == [1, *range(3, len(MIGRATIONS) + 1)] and column_type() == "vector"
    store.set_meta("embedder", "hash-test")  # settings need no dimension
    store.add("docs", *item("a.md", "first vectors fix the dimension"))
    assert versions() == list(range(1, len(MIGRATIONS) + 1))
    assert column_type() == "vector(64)"
    with psycopg.connect(postgres_uri) as db:
        index = db.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            (pg_schema, "chunks_embedding"),
        ).fetchone()
    assert index is not None and "hnsw" in index[0] and "vector_ip_ops" in index[0]
    with pytest.raises(ConfigError, match="32-dimensional vectors, but"):
        loaded, chunks, vectors = item("b.md", "other size")
        store.add("docs", loaded, chunks, vectors[:, :32])
    # A second handle learns the dimension from the schema, not from memory.
    again = PostgresStore(postgres_uri, schema=pg_schema)
    with pytest.raises(ConfigError, match="32-dimensional"):
        again.add("docs", loaded, chunks, vectors[:, :32])
    again.close()
    with psycopg.connect(postgres_uri) as db:
        db.execute(f"INSERT INTO {pg_schema}.schema_migrations (version) VALUES (99)")
    with pytest.raises(ConfigError, match="newer than this Lamina"):
        PostgresStore(postgres_uri, schema=pg_schema)


@pytest.mark.integration
def test_opening_without_create_needs_an_existing_index(postgres_uri: str, pg_schema: str) -> None:
    with pytest.raises(ConfigError, match="No Lamina index"):
        PostgresStore(postgres_uri, schema=pg_schema, create=False)
    with pytest.raises(ConfigError, match="Schema name"):
        PostgresStore(postgres_uri, schema="Robert'); DROP")
    with pytest.raises(ConfigError, match="Cannot connect"):
        PostgresStore(postgres_uri.replace("/postgres?", "/no_such_database?"))


@pytest.mark.integration
def test_search_dense_in_the_database_matches_exact_search(store: PostgresStore) -> None:
    assert store.search_dense(np.ones(64, dtype=np.float32), k=3) == []
    words = [
        "llama",
        "vector",
        "search",
        "prompt",
        "agent",
        "tuning",
        "kittens",
        "solar",
        "zeppelin",
        "quantum",
    ]
    items = [
        item(
            f"{i}.md",
            " ".join(words[(i + j) % len(words)] for j in range(6)),
            metadata={"n": i % 3},
        )
        for i in range(30)
    ]
    store.add_many("docs", items)
    snapshot = store.snapshot()
    query = HashEmbedder().embed_query("solar zeppelin quantum")
    exact_scores = snapshot.vectors @ query
    for k in (1, 5, 12):
        approximate = store.search_dense(query, k)
        exact = store.search_dense(query, k, exact=True)
        assert len(approximate) == len(exact) == k
        expected = np.sort(exact_scores)[::-1][:k]
        assert np.allclose([h.score for h in exact], expected, atol=1e-5)
        assert np.allclose([h.score for h in approximate], expected, atol=1e-5)
    filtered = store.search_dense(query, 50, {"n": [1, 2], "collection": "docs"})
    allowed = store.matching({"n": [1, 2]})
    assert len(filtered) == len(allowed) == 40  # 20 documents of 2 chunks
    assert {h.key for h in filtered} == allowed
    assert [h.score for h in filtered] == sorted((h.score for h in filtered), reverse=True)
    assert store.search_dense(query, 5, {"n": 7}) == []
    with pytest.raises(ConfigError, match="3-dimensional"):
        store.search_dense(query[:3], 5)


@pytest.mark.integration
def test_index_ingests_and_searches_every_mode_on_postgres(
    tmp_path: Path, postgres_uri: str, pg_schema: str
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    store = PostgresStore(postgres_uri, schema=pg_schema)
    index = Index(tmp_path / "cache", store=store, embedder=HashEmbedder())
    summary = index.ingest([corpus])
    assert (summary.files, summary.added, summary.skipped) == (40, 40, [])
    assert index.count() == (40, summary.chunks)
    for mode in ("hybrid", "dense", "bm25"):
        hits = index.search("vector search", k=5, mode=mode)  # type: ignore[arg-type]
        assert len(hits) == 5
        assert all("vector search" in h.chunk.title.lower() for h in hits)  # type: ignore[union-attr]
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    hit = index.search("vector search", k=1)[0]
    assert set(hit.scores) == {"dense", "bm25"}
    document = index.store.document_text(hit.chunk.collection, hit.chunk.chunk.document_id)
    assert document is not None
    assert document[hit.chunk.chunk.start : hit.chunk.chunk.end] == hit.text
    in_db = store.search_dense(HashEmbedder().embed_query("vector search"), k=5)
    through_index = index.search("vector search", k=5, mode="dense")
    assert [h.score for h in in_db] == pytest.approx([h.score for h in through_index], abs=1e-5)
    # Incremental, and searches follow writes made through another handle.
    assert index.ingest([corpus]).unchanged == 40
    (corpus / "extra.txt").write_text("Zeppelins float on hydrogen.")
    other = Index(
        tmp_path / "other-cache",
        store=PostgresStore(postgres_uri, schema=pg_schema),
        embedder=HashEmbedder(),
    )
    other.ingest([corpus])
    assert [r["status"] for r in store.runs()] == ["done", "done", "done"]
    found = index.search("zeppelins", k=1, mode="bm25", filters={"format": "text"})
    assert found[0].chunk.source.endswith("extra.txt")
    other.close()
    mismatched = HashEmbedder(dimension=32)  # another model: "hash:32"
    with pytest.raises(ConfigError, match=rf"#{pg_schema}' was built with the embedder 'hash'"):
        Index(tmp_path / "cache", store=store, embedder=mismatched).ingest([corpus])
    index.close()


@pytest.mark.integration
def test_index_takes_a_dsn(tmp_path: Path, postgres_uri: str) -> None:
    corpus = write_corpus(tmp_path / "corpus", n=5)
    try:
        with Index(tmp_path / "cache", store=postgres_uri, embedder=HashEmbedder()) as index:
            assert isinstance(index.store, PostgresStore) and index.store.schema == "lamina"
            index.ingest([corpus])
            assert index.search("agent tools", k=1)[0].chunk.source.endswith("doc003.md")
        with Index(tmp_path / "cache", store=postgres_uri, create=False) as reopened:
            assert reopened.count()[0] == 5
        # The same schema dropped and re-created: the cached derived indexes must not be used.
        with psycopg.connect(postgres_uri, autocommit=True) as db:
            db.execute("DROP SCHEMA lamina CASCADE")
        (tmp_path / "new").mkdir()
        (tmp_path / "new" / "z.txt").write_text("Zeppelins float on hydrogen.")
        with Index(tmp_path / "cache", store=postgres_uri, embedder=HashEmbedder()) as index:
            index.ingest([tmp_path / "new"])
            hits = index.search("zeppelins", k=5, mode="bm25")
            assert [h.chunk.source for h in hits] == [str(tmp_path / "new" / "z.txt")]
    finally:
        with psycopg.connect(postgres_uri, autocommit=True) as db:
            db.execute("DROP SCHEMA IF EXISTS lamina CASCADE")


@pytest.mark.integration
def test_cli_ingest_and_search_with_store(tmp_path: Path, postgres_uri: str) -> None:
    from typer.testing import CliRunner

    from lamina.cli import app

    corpus = write_corpus(tmp_path / "corpus", n=5)
    runner = CliRunner()
    try:
        ingest = runner.invoke(
            app, ["ingest", str(corpus), "--index", str(tmp_path / "c"), "--store", postgres_uri]
        )
        assert ingest.exit_code == 0, ingest.output
        assert "5 added" in ingest.output
        where = ["--index", str(tmp_path / "c2"), "--store", postgres_uri]
        search = runner.invoke(app, ["search", "agent tools", *where, "--json", "-k", "1"])
        assert search.exit_code == 0, search.output
        assert json.loads(search.output)[0]["source"].endswith("doc003.md")
    finally:
        with psycopg.connect(postgres_uri, autocommit=True) as db:
            db.execute("DROP SCHEMA IF EXISTS lamina CASCADE")


@pytest.mark.integration
def test_hnsw_takes_ef_search_from_the_settings(postgres_uri: str, pg_schema: str) -> None:
    from lamina.retrieval.store import open_store
    from lamina.settings import Settings

    settings = Settings(retrieval={"ef_search": 7})  # type: ignore[arg-type]
    store = open_store(postgres_uri, Path("unused"), settings=settings)
    assert isinstance(store, PostgresStore) and store.ef_search == 7
    store.close()
    handle = PostgresStore(postgres_uri, schema=pg_schema, ef_search=7)
    handle.add_many("docs", [item(f"{i}.md", f"word{i} other{i % 3} more text") for i in range(40)])
    statements: list[str] = []
    connection = handle._db
    original = connection.execute

    def spy(query: object, params: object = None, **kwargs: object) -> object:
        statements.append(f"{query} {params}")
        return original(query, params, **kwargs)  # type: ignore[arg-type]

    connection.execute = spy  # type: ignore[method-assign]
    handle.search_dense(HashEmbedder().embed_query("word3"), 3)
    handle.search_dense(HashEmbedder().embed_query("word3"), 20, ef_search=5)
    connection.execute = original  # type: ignore[method-assign]
    settings_used = [s for s in statements if "hnsw.ef_search" in s]
    assert "('7',)" in settings_used[0] and "('20',)" in settings_used[1]  # at least k
    handle.close()


def same_hits(got: list[Hit], ranking: list[Hit]) -> None:
    """``got`` is the head of ``ranking``: equal scores, and each chunk one of those with its
    score (HashEmbedder and BM25 tie often on these near-identical notes)."""
    assert [h.score for h in got] == pytest.approx([h.score for h in ranking[: len(got)]], abs=1e-4)
    for hit in got:
        tied = {h.chunk.chunk.id for h in ranking if abs(h.score - hit.score) < 1e-4}
        assert hit.chunk.chunk.id in tied
    assert set(got[0].scores) == set(ranking[0].scores)


@pytest.mark.integration
def test_a_searching_process_holds_no_copy_of_the_corpus(
    tmp_path: Path, postgres_uri: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    with Index(
        tmp_path / "writer",
        store=PostgresStore(postgres_uri, schema=pg_schema),
        embedder=HashEmbedder(),
    ) as writer:
        writer.ingest([corpus], collection="notes")
    local = Index(tmp_path / "local", embedder=HashEmbedder())  # the same corpus on SQLite
    local.ingest([corpus], collection="notes")

    def forbidden(self: PostgresStore) -> None:
        raise AssertionError("a search loaded a snapshot of the corpus")

    monkeypatch.setattr(PostgresStore, "snapshot", forbidden)
    replica = Index(
        tmp_path / "replica",
        store=PostgresStore(postgres_uri, schema=pg_schema),
        embedder=HashEmbedder(),
        create=False,
    )
    for query in ("vector search", "agent tools item 7", "fine tuning"):
        for mode in ("hybrid", "dense", "bm25"):
            for filters in (None, {"collection": "notes"}, {"format": "markdown"}):
                got = replica.search(query, k=8, mode=mode, filters=filters)  # type: ignore[arg-type]
                expected = local.search(query, k=50, mode=mode, filters=filters)  # type: ignore[arg-type]
                same_hits(got, expected)
    diverse = replica.search("solar sunlight electricity", k=3, mmr_lambda=0.3)  # MMR reads vectors
    assert len(diverse) == 3
    assert [h.score for h in diverse] == pytest.approx(
        [h.score for h in local.search("solar sunlight electricity", k=3, mmr_lambda=0.3)], abs=1e-4
    )
    assert not (tmp_path / "replica").exists()  # nothing kept on local disk either
    replica.close()
    local.close()


@pytest.mark.integration
def test_rows_written_before_full_text_search_are_indexed_by_the_migration(
    postgres_uri: str, pg_schema: str
) -> None:
    store = PostgresStore(postgres_uri, schema=pg_schema)
    store.add_many(
        "docs", [item("a.md", "zeppelins float on hydrogen"), item("b.md", "solar sails")]
    )
    expected = store.search_sparse("zeppelins hydrogen", 5)
    store.close()
    with psycopg.connect(postgres_uri, autocommit=True) as db:  # as a store before migration 3
        for table in ("documents", "chunks"):
            db.execute(f"UPDATE {pg_schema}.{table} SET lexemes = '', length = 0")
        db.execute(f"DELETE FROM {pg_schema}.schema_migrations WHERE version = 4")
        (df,) = db.execute(
            f"SELECT coalesce(sum(df), 0) FROM {pg_schema}.term_stats"
        ).fetchone() or (None,)
    assert df == 0  # no terms anywhere: full-text search would find nothing
    again = PostgresStore(postgres_uri, schema=pg_schema)  # migration 4 fills the terms in
    assert again.search_sparse("zeppelins hydrogen", 5) == expected
    with psycopg.connect(postgres_uri) as db:
        rows = dict(db.execute(f"SELECT level, rows FROM {pg_schema}.corpus_stats").fetchall())
    assert rows == {"documents": 2, "chunks": 2}
    with psycopg.connect(postgres_uri) as db:
        versions = [r[0] for r in db.execute(f"SELECT version FROM {pg_schema}.schema_migrations")]
    assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
    again.close()


@pytest.mark.integration
def test_bench_beir_runs_in_postgres_without_a_snapshot(
    tmp_path: Path, postgres_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lamina.cli import app

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    topics = ["insulin receptor signalling", "tumour growth in mice", "sleep and memory"]
    with (data / "corpus.jsonl").open("w") as corpus:
        for n in range(30):
            corpus.write(
                json.dumps({"_id": f"d{n}", "title": f"Study {n}", "text": f"A study of "
                            f"{topics[n % 3]} number {n}. " * 3}) + "\n"
            )  # fmt: skip
    with (data / "queries.jsonl").open("w") as queries:
        for n, topic in enumerate(topics):
            queries.write(json.dumps({"_id": f"q{n}", "text": topic}) + "\n")
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{n % 3}\td{n}\t1\n" for n in range(30) if n < 9)
    )

    def forbidden(self: PostgresStore) -> None:
        raise AssertionError("the bench loaded a snapshot of the corpus")

    args = ["bench", "beir", "--data", str(data), "--embedder", "hash", "--json"]
    local = CliRunner().invoke(app, [*args, "--index", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    monkeypatch.setattr(PostgresStore, "snapshot", forbidden)
    try:
        remote = CliRunner().invoke(app, [*args, "--store", postgres_uri])
        assert remote.exit_code == 0, remote.output
        ours, theirs = json.loads(local.stdout), json.loads(remote.stdout)
        assert theirs["store"] == "postgresql" and ours["store"] == "sqlite"
        assert theirs["ndcg@10"] == pytest.approx(ours["ndcg@10"], abs=1e-4)
        assert theirs["chunks"] == ours["chunks"] and theirs["queries"] == 3
    finally:
        with psycopg.connect(postgres_uri, autocommit=True) as db:
            db.execute("DROP SCHEMA IF EXISTS lamina CASCADE")
