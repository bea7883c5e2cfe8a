"""Both stores pass the one contract: SQLite always, PostgreSQL (a real server) as integration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.retrieval.store.base import IndexStore
from lamina.retrieval.store.sqlite import SQLiteStore
from lamina.testing.stores import OpenStore, StoreContract


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    if request.param == "sqlite":
        yield lambda: SQLiteStore(tmp_path / "index")
        return
    from lamina.retrieval.store.postgres import PostgresStore

    uri: str = request.getfixturevalue("postgres_uri")
    schema: str = request.getfixturevalue("pg_schema")

    def open_postgres() -> IndexStore:
        return PostgresStore(uri, schema=schema)

    yield open_postgres


class TestStoreContract(StoreContract):
    pass
