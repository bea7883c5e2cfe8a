"""Runs and their ratings: the raw material of the closed loop from use back to training.

Every answer a user can rate is recorded as a *run* with an id (``lamina ask`` prints it on
stderr); ``lamina feedback RUN_ID up|down [--fix TEXT]`` rates it; ``lamina tune dataset
--from-feedback`` turns the ratings into SFT examples (accepted and fixed answers) and DPO
pairs (the fix preferred to the rejected answer).

The store is one SQLite file, ``$LAMINA_HOME/feedback.sqlite``, with ordered migrations
(``PRAGMA user_version``). A run has a ``kind`` — ``ask`` today; chat turns, agent runs and
answers served over HTTP record themselves the same way — and keeps what a training example
needs: the question, the answer, the model, the citations, and the exact ``messages`` the model
saw when the caller has them (a grounded prompt with its passages), so the example teaches
the task as it was posed.

    >>> store = FeedbackStore(Path(tmp) / "feedback.sqlite")             # doctest: +SKIP
    >>> run_id = store.record("ask", "Capital of France?", "Paris.")     # doctest: +SKIP
    >>> store.rate(run_id, "down", fix="Paris is the capital of France.")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from lamina.errors import ConfigError, InvalidRequestError
from lamina.settings import Settings, get_settings

__all__ = ["FeedbackStore", "Rating", "RatingValue", "Run", "feedback_path"]

RatingValue = Literal["up", "down"]

# Ordered: the store's user_version says how many have run. Never edit one that shipped.
MIGRATIONS = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        created REAL NOT NULL,
        model TEXT,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        citations TEXT NOT NULL DEFAULT '[]',
        messages TEXT,
        meta TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE ratings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(id),
        rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
        fix TEXT,
        created REAL NOT NULL
    );
    CREATE INDEX ratings_by_run ON ratings(run_id, id);
    """,
)


class Run(BaseModel):
    id: str
    kind: str
    created: float
    model: str | None = None
    question: str
    answer: str
    citations: list[dict[str, Any]] = []
    #: The conversation the model answered, when the caller recorded it.
    messages: list[dict[str, str]] | None = None
    meta: dict[str, Any] = {}


class Rating(BaseModel):
    run_id: str
    rating: RatingValue
    fix: str | None = None
    created: float


def feedback_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).home / "feedback.sqlite"


class FeedbackStore:
    """Record runs, rate them, read the ratings back. Opens a connection per call."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or feedback_path()
        self._migrated = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            if not self._migrated:
                self._migrate(db)
            with db:
                yield db

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise ConfigError(
                f"{self.path} was written by a newer Lamina (schema {version}, this one knows "
                f"{len(MIGRATIONS)}). Upgrade Lamina, or point LAMINA_HOME elsewhere."
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        self._migrated = True

    def record(
        self,
        kind: str,
        question: str,
        answer: str,
        *,
        model: str | None = None,
        citations: Sequence[Mapping[str, Any]] = (),
        messages: Sequence[Mapping[str, str]] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Store one run; returns its id (``run-`` and 12 hex digits)."""
        run_id = f"run-{secrets.token_hex(6)}"
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (id, kind, created, model, question, answer, citations, "
                "messages, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    kind,
                    time.time(),
                    model,
                    question,
                    answer,
                    json.dumps([dict(c) for c in citations], ensure_ascii=False),
                    None if messages is None else json.dumps([dict(m) for m in messages]),
                    json.dumps(dict(meta or {}), ensure_ascii=False),
                ),
            )
        return run_id

    @staticmethod
    def _run(row: sqlite3.Row) -> Run:
        return Run(
            id=row["id"],
            kind=row["kind"],
            created=row["created"],
            model=row["model"],
            question=row["question"],
            answer=row["answer"],
            citations=json.loads(row["citations"]),
            messages=None if row["messages"] is None else json.loads(row["messages"]),
            meta=json.loads(row["meta"]),
        )

    def get(self, run_id: str) -> Run:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise InvalidRequestError(
                f"No run {run_id!r} in {self.path}. Run ids are printed by `lamina ask` on "
                "stderr (and in its --json output) as run-XXXXXXXXXXXX."
            )
        return self._run(row)

    def rate(self, run_id: str, rating: str, fix: str | None = None) -> Rating:
        """Rate a run; a later rating of the same run replaces the earlier one for training."""
        if rating not in ("up", "down"):
            raise InvalidRequestError(f"A rating is 'up' or 'down', not {rating!r}.")
        if fix is not None and not fix.strip():
            raise InvalidRequestError("--fix is empty; give the answer that should have been.")
        if fix is not None and rating == "up":
            raise InvalidRequestError(
                "--fix goes with 'down': an answer rated up is kept as it is. Rate it down "
                "with --fix TEXT to replace it."
            )
        self.get(run_id)
        made = Rating.model_validate(
            {"run_id": run_id, "rating": rating, "fix": fix, "created": time.time()}
        )
        with self._connect() as db:
            db.execute(
                "INSERT INTO ratings (run_id, rating, fix, created) VALUES (?, ?, ?, ?)",
                (made.run_id, made.rating, made.fix, made.created),
            )
        return made

    def rated(self, kinds: Sequence[str] | None = None) -> list[tuple[Run, Rating]]:
        """Every rated run with its latest rating, oldest run first."""
        query = (
            "SELECT runs.*, r.rating, r.fix, r.created AS rated FROM runs JOIN ratings r "
            "ON r.id = (SELECT MAX(id) FROM ratings WHERE run_id = runs.id)"
        )
        args: list[str] = []
        if kinds:
            query += f" WHERE runs.kind IN ({', '.join('?' for _ in kinds)})"
            args = list(kinds)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY runs.created, runs.id", args).fetchall()
        return [
            (
                self._run(row),
                Rating(
                    run_id=row["id"], rating=row["rating"], fix=row["fix"], created=row["rated"]
                ),
            )
            for row in rows
        ]
