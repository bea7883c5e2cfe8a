"""``search_documents``: hybrid search over a Lamina index, passages with citation spans.

Each passage names its source, page and character span, ``document_text[start:end]`` being
exactly the passage; the spans also come back as ``data`` (structured citations) so an agent's
run result can point at them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from lamina.tools.base import FunctionTool, ToolExample
from lamina.tools.errors import ToolError
from lamina.tools.registry import ToolContext

__all__ = ["DocumentSearch", "make"]

Query = Annotated[str, Field(min_length=1, max_length=300, examples=["QLoRA data type"])]
Count = Annotated[int, Field(ge=1, le=8)]


class DocumentSearch:
    """Search one index directory; opened on the first call."""

    def __init__(self, directory: Path | None, context: ToolContext) -> None:
        self.directory = directory
        self.context = context
        self._index: Any = None

    def search(self, query: str, k: int) -> tuple[str, list[dict[str, Any]]]:
        if self.directory is None:
            raise ToolError(
                "search_documents has no index to search: pass --index DIR (or "
                "ToolContext(index=...)) with a directory built by `lamina ingest`."
            )
        if self._index is None:
            from lamina.retrieval.index import Index

            if not (self.directory / "lamina.sqlite").is_file():
                raise ToolError(
                    f"{str(self.directory)!r} is not a Lamina index (no lamina.sqlite); build "
                    f"one with `lamina ingest PATH --index {self.directory}`."
                )
            self._index = Index(self.directory, create=False, settings=self.context.settings)
        hits = self._index.search(query, k=k)
        citations = []
        lines = []
        for n, hit in enumerate(hits, 1):
            chunk = hit.chunk.chunk
            # The file's name is enough for the model; the citation keeps the whole source.
            name = hit.chunk.source.rsplit("/", 1)[-1]
            where = name + (f", page {chunk.page}" if chunk.page else "")
            text = " ".join(chunk.text.split())
            lines.append(f"[{n}] {text}\n    ({where}, chars {chunk.start}-{chunk.end})")
            citations.append(
                {
                    "n": n,
                    "source": hit.chunk.source,
                    "page": chunk.page,
                    "start": chunk.start,
                    "end": chunk.end,
                    "quote": chunk.text,
                    "score": round(hit.score, 4),
                }
            )
        return ("\n".join(lines) if lines else f"No passages found for {query!r}."), citations


def make(context: ToolContext) -> FunctionTool:
    """The ``search_documents`` tool over ``context.index``."""
    searcher = DocumentSearch(context.index, context)

    def search_documents(query: Query, k: Count = 3) -> str:
        """Search the user's documents and return the most relevant passages, numbered, each
        with its source and character span.

        Args:
            query: what to look for, in a few words
            k: how many passages to return (1 to 8)
        """
        text, citations = searcher.search(query, k)
        tool.last_data = citations
        return text

    tool = FunctionTool(
        search_documents,
        examples=[
            ToolExample(
                request="Which data type does QLoRA use?",
                arguments={"query": "QLoRA data type"},
                result="[1] QLoRA quantizes the base model to 4 bits with the NF4 data type.",
                answer="QLoRA uses the NF4 data type.",
            )
        ],
    )
    return tool
