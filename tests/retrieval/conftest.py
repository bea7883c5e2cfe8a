"""A real PostgreSQL with pgvector for the store tests, started once per session.

pgserver ships PostgreSQL 16 with pgvector and serves it on a unix socket only (no TCP port).
PostgreSQL refuses to run as root; when the tests run as root, pgserver runs ``initdb`` and
the server as a system user named ``pgserver`` (which it creates with ``useradd`` on first
use) and opens the data directory's parent folders to it (``o+rx``). That is why the data
directory lives in a folder of its own from ``mkdtemp`` rather than under pytest's private
``tmp_path``. Each test gets its own schema in the one database, dropped afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """The URI of a session-wide PostgreSQL server with the vector extension created."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns that XDG_RUNTIME_DIR is unset
        pgserver = require("pgserver", "it runs the real PostgreSQL: pip install pgserver")
    psycopg = require("psycopg", "the PostgreSQL store needs it: pip install 'lamina[postgres]'")
    folder = Path(tempfile.mkdtemp(prefix="lamina-pg-"))
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
    try:
        uri = str(server.get_uri())
        with psycopg.connect(uri, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield uri
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_schema(postgres_uri: str) -> Iterator[str]:
    """A fresh schema name for one test; the schema is dropped when the test ends."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_uri, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
