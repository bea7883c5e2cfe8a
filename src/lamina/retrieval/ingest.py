"""Ingestion: files → documents → chunks → embeddings → the store, incrementally.

Unchanged files (same SHA-256) are skipped, changed ones re-chunked and replaced, and files gone
from a re-ingested directory removed. A file that cannot be read is reported with its reason
and skipped while the rest goes on; so is a JSONL record (file and line), and a document the
chunker or the embedder chokes on: a batch that fails is retried one document at a time, so
one bad record costs only itself. Work lands in transactions of a few dozen documents, so a
crash or a SIGKILL at any point loses at most the batch in flight, and the next run picks up
from there with no duplicates. Failures of the embedder itself (a Lamina error: a provider
down, a missing key) stop the ingest instead of skipping every document.

One ingest at a time writes to an index (:meth:`~lamina.retrieval.store.base.IndexStore.
ingest_lock`): two concurrent ones would each decide from their own view which documents to
remove and record each other as interrupted. The second waits ``wait_s`` seconds, then stops
with :class:`~lamina.retrieval.errors.IndexBusyError` before writing anything.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lamina.errors import ConfigError, InvalidRequestError, LaminaError
from lamina.models.embeddings.base import DocumentEmbedder
from lamina.retrieval.chunking import Chunker
from lamina.retrieval.documents import Chunk, LoadedDocument
from lamina.retrieval.errors import LoadError
from lamina.retrieval.loaders import jsonl_records, load, source_name
from lamina.retrieval.store.base import IndexStore
from lamina.settings import LoaderSettings, get_settings

__all__ = ["IngestSummary", "Ingestor", "Skipped"]

log = logging.getLogger(__name__)

JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class IngestSummary:
    """What one ingest did. ``files`` counts the files looked at (a JSONL corpus is one)."""

    files: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "chunks": self.chunks,
            "skipped": [{"source": s.source, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3),
        }


#: Progress callback: (documents done, documents known so far or None, current source).
Progress = Callable[[int, int | None, str], None]
#: A document waiting for its batch, with where it came from (``file`` or ``file:line``).
Pending = tuple[LoadedDocument, str]
#: A document ready for the store: its chunks and their vectors.
Prepared = tuple[LoadedDocument, list[Chunk], npt.NDArray[np.float32]]


class Ingestor:
    """Puts files into a store. ``batch`` documents are embedded and committed together."""

    def __init__(
        self,
        store: IndexStore,
        embedder: DocumentEmbedder,
        chunker: Chunker,
        *,
        batch: int = 64,
        limits: LoaderSettings | None = None,
        wait_s: float = 0.0,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.batch = batch
        self.limits = limits or get_settings().loaders
        self.wait_s = wait_s
        self._check_embedder()

    def _check_embedder(self) -> None:
        recorded = self.store.get_meta("embedder")
        name = self.embedder.name
        if recorded is None:
            self.store.set_meta("embedder", name)
            self.store.set_meta("dimension", str(self.embedder.dimension))
        elif recorded != name:
            where = getattr(self.store, "directory", None) or getattr(self.store, "location", "")
            raise ConfigError(
                f"The index at {str(where)!r} was built with the embedder "
                f"{recorded!r}, not {name!r}. Use --embedder {recorded} with this index, or "
                f"ingest into a new index directory."
            )

    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        collection: str = "default",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> IngestSummary:
        with self.store.ingest_lock(self.wait_s):  # one ingest into an index at a time
            return self._ingest(paths, collection, include, exclude, progress)

    def _ingest(
        self,
        paths: Sequence[str | Path],
        collection: str,
        include: Sequence[str],
        exclude: Sequence[str],
        progress: Progress | None,
    ) -> IngestSummary:
        started = time.perf_counter()
        summary = IngestSummary()
        run = self.store.begin_run()
        status = "failed"
        try:
            known = self.store.sources(collection)
            seen: set[str] = set()
            walked_roots: list[str] = []
            files = list(_walk(paths, include, exclude, walked_roots))
            total = sum(_count_records(f) if _is_jsonl(f) else 1 for f in files)
            pending: list[Pending] = []
            done = 0
            for file in files:
                summary.files += 1
                mark = f"file:{source_name(file)}"
                digest = _file_hash(file) if _is_jsonl(file) else None
                if digest is not None and self.store.get_meta(mark) == digest:
                    items: Iterable[Pending | str] = _known_records(file, known)
                else:
                    items = self._documents(file, known, summary)
                for item in items:
                    source = item if isinstance(item, str) else item[0].document.source
                    seen.add(source)
                    done += 1
                    if progress:
                        progress(done, total, source)
                    if isinstance(item, str):
                        summary.unchanged += 1
                        continue
                    pending.append(item)
                    if len(pending) >= self.batch:
                        self._flush(collection, pending, known, summary)
                        pending = []
                if digest is not None:
                    # A corpus file counts as unchanged only once all its records have landed.
                    self._flush(collection, pending, known, summary)
                    pending = []
                    self.store.set_meta(mark, digest)
            self._flush(collection, pending, known, summary)
            summary.removed = self._remove_missing(collection, known, seen, walked_roots)
            status = "done"
        finally:
            summary.seconds = time.perf_counter() - started
            self.store.end_run(run, summary.as_dict(), status)
        return summary

    def _documents(
        self, file: Path, known: dict[str, tuple[str, str]], summary: IngestSummary
    ) -> Iterator[Pending | str]:
        """Loaded documents that need (re)indexing with where they came from (``file`` or
        ``file:line``), or the source name of unchanged ones."""

        def report(error: LoadError) -> None:
            summary.skipped.append(Skipped(error.source, error.reason))

        source = source_name(file)
        if _is_jsonl(file):
            for line, loaded in jsonl_records(file, on_error=report, limits=self.limits):
                unchanged = known.get(loaded.document.source, ("", ""))[1]
                same = unchanged == loaded.document.content_hash
                yield loaded.document.source if same else (loaded, f"{source}:{line}")
            return
        try:
            if source in known and known[source][1] == _file_hash(file):
                yield source
                return
            yield load(file, limits=self.limits), source
        except LoadError as error:
            report(error)
        except OSError as error:
            summary.skipped.append(Skipped(source, f"cannot be read ({error})"))

    def _flush(
        self,
        collection: str,
        pending: list[Pending],
        known: dict[str, tuple[str, str]],
        summary: IngestSummary,
    ) -> None:
        if not pending:
            return
        items = self._prepare(pending, summary)
        if not items:
            return
        self.store.add_many(collection, items)
        for doc, chunks, _ in items:
            if doc.document.source in known:
                summary.updated += 1
            else:
                summary.added += 1
            summary.chunks += len(chunks)

    def _prepare(self, pending: list[Pending], summary: IngestSummary) -> list[Prepared]:
        """Chunks and vectors of a batch; when the batch fails, of each document alone, the
        ones that still fail reported (with their file and line) and left out."""
        try:
            return self._chunk_and_embed([doc for doc, _ in pending])
        except LaminaError:
            raise  # the embedder or the configuration, not a record: stop and say so
        except Exception as error:
            if len(pending) == 1:
                self._skip(pending[0], error, summary)
                return []
            log.warning(
                "a batch of %d documents failed (%r); retrying one by one", len(pending), error
            )
        prepared: list[Prepared] = []
        for item in pending:
            try:
                prepared.extend(self._chunk_and_embed([item[0]]))
            except LaminaError:
                raise
            except Exception as error:
                self._skip(item, error, summary)
        return prepared

    def _skip(self, item: Pending, error: Exception, summary: IngestSummary) -> None:
        log.warning("skipping %s", item[1], exc_info=error)
        summary.skipped.append(
            Skipped(
                item[1],
                f"it could not be chunked and embedded ({type(error).__name__}: {error}); "
                f"the rest was ingested",
            )
        )

    def _chunk_and_embed(self, documents: list[LoadedDocument]) -> list[Prepared]:
        chunk_lists = list(self.chunker.chunk_many(documents, batch_size=len(documents)))
        texts = [
            chunk.contextual_text(doc.document.title)
            for doc, chunks in zip(documents, chunk_lists, strict=True)
            for chunk in chunks
        ]
        vectors = self.embedder.embed_documents(texts) if texts else _empty(self.embedder)
        if len(vectors) != len(texts):
            raise ValueError(f"the embedder returned {len(vectors)} vectors for {len(texts)}")
        items: list[Prepared] = []
        offset = 0
        for doc, chunks in zip(documents, chunk_lists, strict=True):
            items.append((doc, chunks, vectors[offset : offset + len(chunks)]))
            offset += len(chunks)
        return items

    def _remove_missing(
        self,
        collection: str,
        known: dict[str, tuple[str, str]],
        seen: set[str],
        roots: list[str],
    ) -> int:
        gone = [
            doc_id
            for source, (doc_id, _) in known.items()
            if source not in seen and any(_under(source, root) for root in roots)
        ]
        return self.store.delete(collection, gone)


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in JSONL_SUFFIXES


def _count_records(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for line in stream if line.strip())


def _known_records(file: Path, known: dict[str, tuple[str, str]]) -> Iterator[str]:
    prefix = f"{source_name(file)}#"
    return (source for source in known if source.startswith(prefix))


def _under(source: str, root: str) -> bool:
    path = source.split("#", 1)[0]
    return path == root or path.startswith(root.rstrip("/") + "/")


def _walk(
    paths: Iterable[str | Path], include: Sequence[str], exclude: Sequence[str], roots: list[str]
) -> Iterator[Path]:
    """Files under ``paths`` (sorted), filtered by glob patterns on the relative path or name.

    ``roots`` receives every path whose whole content was walked (directories, and JSONL
    files), within which missing documents are removed.
    """
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InvalidRequestError(
                f"Nothing to ingest at {str(path)!r}: no such file or folder."
            )
        if path.is_file():
            if _is_jsonl(path):
                roots.append(source_name(path))
            yield path
            continue
        roots.append(source_name(path))
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            relative = file.relative_to(path).as_posix()
            if any(part.startswith(".") for part in file.relative_to(path).parts):
                continue  # hidden files and folders (.git, .venv) are never documents
            if include and not _matches(relative, include):
                continue
            if exclude and _matches(relative, exclude):
                continue
            yield file


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _empty(embedder: DocumentEmbedder) -> npt.NDArray[np.float32]:
    return np.zeros((0, embedder.dimension), dtype=np.float32)
