"""API keys, stored hashed in SQLite under ``$LAMINA_HOME/keys.sqlite``.

A key looks like ``lam-<43 url-safe characters>`` (256 random bits) and is shown once, when it
is created. The store keeps its first 12 characters as a lookup id and the SHA-256 of the
whole key; with that much entropy a slow password hash adds nothing. Comparison is
constant-time. An *admin* key (``lamina keys create NAME --admin``) may also share its
document collections with every other key (``lamina.server.tenancy``).

>>> import tempfile, pathlib
>>> store = KeyStore(pathlib.Path(tempfile.mkdtemp()) / "keys.sqlite")
>>> key = store.create("ci")
>>> store.verify(key).name, store.verify("lam-wrong") is None
('ci', True)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.errors import ConfigError

__all__ = ["ApiKey", "KeyStore"]

PREFIX = "lam-"
_ID_LENGTH = 12

# Ordered migrations: the schema version is PRAGMA user_version = number applied.
_MIGRATIONS = [
    """
    CREATE TABLE keys (
        name TEXT PRIMARY KEY,
        lookup TEXT NOT NULL UNIQUE,
        digest TEXT NOT NULL,
        created REAL NOT NULL,
        requests_per_minute REAL,
        tokens_per_minute REAL
    );
    """,
    # 2: admin keys may share their collections with every key.
    """
    ALTER TABLE keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
    """,
]


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without the secret."""

    name: str
    lookup: str
    created: float
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    admin: bool = False


_COLUMNS = "name, lookup, created, requests_per_minute, tokens_per_minute, admin"


def _key(row: Sequence[Any]) -> ApiKey:
    name, lookup, created, rpm, tpm, admin = row
    return ApiKey(name, lookup, created, rpm, tpm, bool(admin))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=5000")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                db.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")
            self._db = db
        return self._db

    def create(
        self,
        name: str,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        admin: bool = False,
    ) -> str:
        """Store a new key named ``name`` and return it; this is the only time it is seen."""
        if not name or not name.strip():
            raise ConfigError("A key needs a name, e.g. `lamina keys create ci`.")
        key = PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            try:
                self._conn().execute(
                    "INSERT INTO keys (name, lookup, digest, created, requests_per_minute, "
                    "tokens_per_minute, admin) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        key[:_ID_LENGTH],
                        _digest(key),
                        time.time(),
                        requests_per_minute,
                        tokens_per_minute,
                        int(admin),
                    ),
                )
            except sqlite3.IntegrityError:
                raise ConfigError(
                    f"A key named {name!r} exists already. Revoke it first "
                    f"(`lamina keys revoke {name}`) or pick another name."
                ) from None
        return key

    def verify(self, key: str) -> ApiKey | None:
        """The stored key matching ``key``, or None."""
        if not key.startswith(PREFIX) or len(key) <= _ID_LENGTH:
            return None
        with self._lock:
            row = (
                self._conn()
                .execute(
                    f"SELECT {_COLUMNS}, digest FROM keys WHERE lookup = ?",
                    (key[:_ID_LENGTH],),
                )
                .fetchone()
            )
        if row is None or not hmac.compare_digest(row[6], _digest(key)):
            return None
        return _key(row[:6])

    def list_keys(self) -> list[ApiKey]:
        with self._lock:
            rows = self._conn().execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created").fetchall()
        return [_key(row) for row in rows]

    def revoke(self, name: str) -> bool:
        """Delete the key named ``name``; False when there was none."""
        with self._lock:
            cursor = self._conn().execute("DELETE FROM keys WHERE name = ?", (name,))
        return cursor.rowcount > 0

    def any(self) -> bool:
        """Whether auth is on: true as soon as one key exists."""
        if self._db is None and not self.path.exists():
            return False  # don't create the file just to learn there are no keys
        with self._lock:
            return self._conn().execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
