"""``sql``: read-only queries on a SQLite file.

Three locks, each enough alone: the file is opened read-only (``mode=ro``), the connection is
``query_only``, and an authorizer allows reading and nothing else (no ATTACH, no PRAGMA, no
writes, no loading extensions). A progress handler stops a query after ``timeout_s``; at most
``MAX_ROWS`` rows come back.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Annotated

from pydantic import Field

from lamina.tools.base import FunctionTool
from lamina.tools.errors import ToolError
from lamina.tools.registry import ToolContext

__all__ = ["MAX_ROWS", "make", "read_only_query"]

MAX_ROWS = 50
_ALLOWED = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
Query = Annotated[
    str, Field(min_length=1, max_length=2000, examples=["SELECT name FROM sqlite_master"])
]


def read_only_query(database: Path, query: str, *, timeout_s: float = 10.0) -> str:
    """Run ``query`` on ``database`` read-only; rows as tab-separated lines under a header."""
    if not database.is_file():
        raise ToolError(f"The SQLite database {str(database)!r} does not exist.")
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error as exc:
        raise ToolError(f"Cannot open {str(database)!r} read-only: {exc}") from None
    deadline = time.monotonic() + timeout_s
    try:
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(
            lambda action, *_: sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY
        )
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cursor = connection.execute(query)
            rows = cursor.fetchmany(MAX_ROWS + 1)
        except sqlite3.DatabaseError as exc:
            if "interrupted" in str(exc):
                raise ToolError(
                    f"The query ran longer than {timeout_s:g} s and was stopped."
                ) from None
            if "not authorized" in str(exc):
                raise ToolError(
                    "Only reading queries (SELECT) are allowed; the database is read-only."
                ) from None
            raise ToolError(f"SQLite error: {exc}") from None
        header = [d[0] for d in cursor.description or []]
    finally:
        connection.close()
    lines = ["\t".join(header)] if header else []
    lines += ["\t".join("NULL" if v is None else str(v) for v in row) for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        lines.append(f"[only the first {MAX_ROWS} rows are shown]")
    return "\n".join(lines) if lines else "(no rows)"


def make(context: ToolContext) -> FunctionTool:
    """The ``sql`` tool on the ``tools.sql_database`` file."""
    database = context.settings.tools.sql_database
    timeout = context.settings.tools.timeout_s

    def sql(query: Query) -> str:
        """Run a read-only SQL query (SQLite dialect) on the configured database and return
        the rows.

        Args:
            query: one SELECT statement, e.g. SELECT name FROM sqlite_master WHERE type='table'
        """
        if database is None:
            raise ToolError(
                "The sql tool has no database: set tools.sql_database (LAMINA_TOOLS__SQL_DATABASE) "
                "to a SQLite file."
            )
        return read_only_query(Path(database), query, timeout_s=timeout)

    return FunctionTool(sql)
