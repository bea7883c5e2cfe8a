"""Long-term memory as a Lamina collection: ``remember`` stores a note, ``recall`` finds notes.

Notes live in an index directory (``$LAMINA_HOME/memory`` by default) as the collection
``memory``. The source of truth is ``DIR/memory.jsonl``, one note a line, appended and then
ingested (only the new line is embedded: ingest skips records it already holds), so memory
survives restarts and can be read, edited or deleted with any text editor.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from lamina.settings import Settings, get_settings
from lamina.tools.base import FunctionTool
from lamina.tools.errors import ToolError
from lamina.tools.registry import ToolContext

__all__ = ["COLLECTION", "LongTermMemory", "make_recall", "make_remember"]

COLLECTION = "memory"
Note = Annotated[str, Field(min_length=1, max_length=1000, examples=["The user likes tea."])]
Query = Annotated[str, Field(min_length=1, max_length=300, examples=["drinks the user likes"])]
Count = Annotated[int, Field(ge=1, le=10)]


class LongTermMemory:
    """Notes in the ``memory`` collection of the index at ``directory``."""

    def __init__(self, directory: Path, *, settings: Settings | None = None) -> None:
        self.directory = Path(directory)
        self.settings = settings or get_settings()
        self._index: Any = None
        self._lock = threading.Lock()

    @property
    def log(self) -> Path:
        return self.directory / "memory.jsonl"

    def _open(self) -> Any:
        if self._index is None:
            from lamina.retrieval.index import Index

            self.directory.mkdir(parents=True, exist_ok=True)
            self._index = Index(self.directory, settings=self.settings)
        return self._index

    def remember(self, note: str, *, source: str = "agent") -> str:
        """Store ``note``; returns its id. The same note twice is stored once."""
        note = " ".join(note.split())
        note_id = hashlib.sha256(note.encode()).hexdigest()[:16]
        with self._lock:
            index = self._open()
            known = {json.loads(line).get("_id") for line in self._lines() if line.strip()}
            if note_id not in known:
                metadata = {"source": source, "time": time.time()}
                record = {"_id": note_id, "text": note, "metadata": metadata}
                with self.log.open("a", encoding="utf-8") as file:
                    file.write(json.dumps(record) + "\n")
            index.ingest([self.log], collection=COLLECTION)
        return note_id

    def recall(self, query: str, k: int = 3) -> list[str]:
        """The ``k`` notes closest to ``query``, best first."""
        with self._lock:
            if not self.log.is_file():
                return []
            hits = self._open().search(query, k=k, collection=COLLECTION)
        return [" ".join(hit.chunk.chunk.text.split()) for hit in hits]

    def _lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines() if self.log.is_file() else []

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


def _memory(context: ToolContext) -> LongTermMemory:
    memory = context.extra.get("long_term_memory")
    if not isinstance(memory, LongTermMemory):
        memory = LongTermMemory(context.memory_dir, settings=context.settings)
        context.extra["long_term_memory"] = memory
    return memory


def make_remember(context: ToolContext) -> FunctionTool:
    """The ``remember`` tool: store a fact in long-term memory."""
    memory = _memory(context)

    def remember(note: Note) -> str:
        """Store a fact in long-term memory, to be recalled in later conversations.

        Args:
            note: the fact to remember, as one self-contained sentence
        """
        memory.remember(note)
        return f"Remembered: {note}"

    return FunctionTool(remember)


def make_recall(context: ToolContext) -> FunctionTool:
    """The ``recall`` tool: search long-term memory."""
    memory = _memory(context)

    def recall(query: Query, k: Count = 3) -> str:
        """Search long-term memory for facts stored earlier.

        Args:
            query: what to look for
            k: how many facts to return (1 to 10)
        """
        try:
            notes = memory.recall(query, k)
        except ToolError:
            raise
        if not notes:
            return "Nothing in long-term memory matches."
        return "\n".join(f"- {n}" for n in notes)

    return FunctionTool(recall)
