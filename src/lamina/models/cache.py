"""An on-disk cache of deterministic responses (temperature 0 or a fixed seed).

One SQLite file under ``LAMINA_HOME``; safe to share between processes. Hits and misses are
counted in the same file so ``lamina cache`` can report them across runs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from lamina.types import ChatOptions, Completion, Message

__all__ = ["CacheStats", "ResponseCache", "cache_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, completion TEXT NOT NULL,
                                      created REAL NOT NULL DEFAULT (julianday('now')));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('hits', 0), ('misses', 0);
"""


def cache_key(model: str, messages: list[Message], options: ChatOptions) -> str:
    """A stable digest of everything that determines a deterministic answer."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": [m.model_dump() for m in messages],
        "options": options.model_dump(exclude={"truncate"}),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheStats(dict[str, int]):
    @property
    def hits(self) -> int:
        return self.get("hits", 0)

    @property
    def misses(self) -> int:
        return self.get("misses", 0)


class ResponseCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT completion FROM responses WHERE key = ?", (key,)
            ).fetchone()
            counter = "hits" if row else "misses"
            self._db.execute("UPDATE counters SET value = value + 1 WHERE name = ?", (counter,))
        if row is None:
            return None
        return Completion.model_validate_json(row[0]).model_copy(update={"cached": True})

    def put(self, key: str, completion: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, completion) VALUES (?, ?)",
                (key, completion.model_dump_json()),
            )

    def stats(self) -> CacheStats:
        with self._lock:
            rows = self._db.execute("SELECT name, value FROM counters").fetchall()
            (entries,) = self._db.execute("SELECT count(*) FROM responses").fetchone()
        return CacheStats(dict(rows), entries=entries)

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM responses")
            self._db.execute("UPDATE counters SET value = 0")

    def close(self) -> None:
        self._db.close()
