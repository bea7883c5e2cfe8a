"""Stores are chosen by URL scheme from the lamina.stores registry, the built-in ones too."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import ConfigError
from lamina.retrieval.index import Index
from lamina.retrieval.store import open_store, register_store, store_schemes
from lamina.retrieval.store.base import IndexStore
from lamina.retrieval.store.sqlite import DB_NAME, SQLiteStore
from lamina.settings import Settings
from lamina.testing import HashEmbedder
from tests.retrieval.test_index import write_corpus


def test_builtin_stores_are_registered_by_scheme() -> None:
    assert {"sqlite", "postgresql", "postgres"} <= set(store_schemes())


def test_no_store_is_sqlite_in_the_index_directory(tmp_path: Path) -> None:
    store = open_store(None, tmp_path / "idx")
    assert isinstance(store, SQLiteStore) and store.directory == tmp_path / "idx"
    store.close()
    assert (tmp_path / "idx" / DB_NAME).is_file()


@pytest.mark.parametrize("form", ["path", "url"])
def test_a_path_or_sqlite_url_keeps_the_source_of_truth_elsewhere(
    tmp_path: Path, form: str
) -> None:
    elsewhere = tmp_path / "truth"
    url = str(elsewhere) if form == "path" else f"sqlite://{elsewhere}"
    corpus = write_corpus(tmp_path / "corpus", 3)
    with Index(tmp_path / "cache", store=url, embedder=HashEmbedder()) as index:
        assert isinstance(index.store, SQLiteStore) and index.store.directory == elsewhere
        index.ingest([corpus])
        assert index.search("vector", k=1)
        counts = index.count()
    assert (elsewhere / DB_NAME).is_file() and not (tmp_path / "cache" / DB_NAME).exists()
    with Index(tmp_path / "other-cache", store=url, embedder=HashEmbedder()) as again:
        assert again.count() == counts and counts[0] == 3


def test_unknown_scheme_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"Unknown store 'mysql://x'.*'mysql'.*postgresql, sqlite"
    ):
        Index(tmp_path / "idx", store="mysql://x", embedder=HashEmbedder())
    assert not (tmp_path / "idx").exists()  # nothing was created on the way to the error


def test_a_libpq_keyword_string_is_not_taken_for_a_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"libpq keyword string.*postgresql://"):
        open_store("host=db.internal dbname=lamina", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_third_party_store_registers_like_the_built_in_ones(tmp_path: Path) -> None:
    opened: list[tuple[str, Path, bool]] = []

    class CountingStore(SQLiteStore):
        @classmethod
        def from_url(
            cls, url: str, *, directory: Path, create: bool, settings: Settings
        ) -> CountingStore:
            opened.append((url, directory, create))
            return cls(directory / "counted", create=create)

    register_store("counting", CountingStore)
    assert "counting" in store_schemes()
    with Index(tmp_path / "idx", store="counting://anything", embedder=HashEmbedder()) as index:
        store: IndexStore = index.store
        assert isinstance(store, CountingStore)
    assert opened == [("counting://anything", tmp_path / "idx", True)]


@pytest.mark.integration
def test_postgres_and_postgresql_schemes_open_the_same_store(
    tmp_path: Path, postgres_uri: str
) -> None:
    from lamina.retrieval.store.postgres import PostgresStore

    assert postgres_uri.startswith("postgresql://")
    short = "postgres://" + postgres_uri.removeprefix("postgresql://")
    for url in (postgres_uri, short):
        store = open_store(url, tmp_path)
        try:
            assert isinstance(store, PostgresStore) and store.dsn == url
        finally:
            store.close()
