"""Conversation memory: sessions persisted in SQLite by name, older turns summarised.

A session is the list of (task, answer) turns of the runs made under one name. The next run
with that name sees them as earlier conversation. When they no longer fit ``budget_tokens``,
the oldest are folded into a running summary written by the model (``prompts/summary.j2``)
and only the newest stay verbatim: the prompt stays within budget however long the session
grows, and nothing is deleted (summarised turns stay in the database, marked).

The schema evolves by ordered migrations (``MIGRATIONS``) recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lamina.errors import ConfigError
from lamina.types import Message

__all__ = ["MIGRATIONS", "SessionStore", "Turn"]

MIGRATIONS: list[str] = [
    # 1: sessions with a running summary; turns in order, flagged once summarised.
    """
    CREATE TABLE sessions (
        name     TEXT PRIMARY KEY,
        summary  TEXT NOT NULL DEFAULT '',
        created  REAL NOT NULL,
        updated  REAL NOT NULL
    );
    CREATE TABLE turns (
        session     TEXT NOT NULL REFERENCES sessions(name),
        seq         INTEGER NOT NULL,
        task        TEXT NOT NULL,
        answer      TEXT NOT NULL,
        stop_reason TEXT NOT NULL,
        trace_id    TEXT,
        summarised  INTEGER NOT NULL DEFAULT 0,
        created     REAL NOT NULL,
        PRIMARY KEY (session, seq)
    );
    """,
]

Turn = tuple[str, str]  # (task, answer)


class SessionStore:
    """Sessions in one SQLite file (``$LAMINA_HOME/agents.sqlite`` by default)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise ConfigError(
                    f"{str(self.path)!r} was written by a newer Lamina (schema {version}, this "
                    f"one knows {len(MIGRATIONS)}). Upgrade Lamina or use another LAMINA_HOME."
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def history(self, session: str) -> tuple[str, list[Turn]]:
        """(summary of older turns, the turns kept verbatim, oldest first)."""
        with self._lock:
            row = self._db.execute("SELECT summary FROM sessions WHERE name = ?", (session,))
            found = row.fetchone()
            turns = self._db.execute(
                "SELECT task, answer FROM turns WHERE session = ? AND summarised = 0 ORDER BY seq",
                (session,),
            ).fetchall()
        return (found[0] if found else ""), [(t, a) for t, a in turns]

    def add(
        self, session: str, task: str, answer: str, stop_reason: str, trace: str | None
    ) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO sessions (name, created, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET updated = excluded.updated",
                    (session, now, now),
                )
                seq = self._db.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE session = ?", (session,)
                ).fetchone()[0]
                self._db.execute(
                    "INSERT INTO turns (session, seq, task, answer, stop_reason, trace_id, "
                    "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (session, seq, task, answer, stop_reason, trace, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def compact(
        self,
        session: str,
        fits: Callable[[str, list[Turn]], bool],
        summarise: Callable[[str, list[Turn]], str],
        keep: int = 1,
    ) -> tuple[str, list[Turn]]:
        """Fold the oldest turns into the summary until ``fits(summary, turns)``; the newest
        ``keep`` turns always stay verbatim. Returns the new (summary, turns)."""
        summary, turns = self.history(session)
        if fits(summary, turns) or len(turns) <= keep:
            return summary, turns
        fold = 1
        while fold < len(turns) - keep and not fits(summary, turns[fold:]):
            fold += 1
        summary = summarise(summary, turns[:fold])
        with self._lock:
            rows = self._db.execute(
                "SELECT seq FROM turns WHERE session = ? AND summarised = 0 ORDER BY seq LIMIT ?",
                (session, fold),
            ).fetchall()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE turns SET summarised = 1 WHERE session = ? AND seq = ?",
                [(session, r[0]) for r in rows],
            )
            self._db.execute("UPDATE sessions SET summary = ? WHERE name = ?", (summary, session))
            self._db.execute("COMMIT")
        return summary, turns[fold:]

    def sessions(self) -> list[tuple[str, int, float]]:
        """(name, number of turns, last update) of every session, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.name, COUNT(t.seq), s.updated FROM sessions s "
                "LEFT JOIN turns t ON t.session = s.name GROUP BY s.name ORDER BY s.updated DESC"
            ).fetchall()
        return [(n, int(c), float(u)) for n, c, u in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def as_messages(summary: str, turns: list[Turn]) -> list[Message]:
    """Earlier turns as chat messages (the summary goes in the system prompt)."""
    out: list[Message] = []
    for task, answer in turns:
        out += [Message.user(task), Message.assistant(answer)]
    return out
