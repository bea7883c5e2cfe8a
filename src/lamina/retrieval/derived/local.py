"""The search indexes a local store owns: BM25 over documents and chunks, and dense vectors
(exact, or IVF above ``ann_threshold`` chunks), kept current without rebuilding.

A store that keeps a change log (:class:`ChangeLog`: the SQLite store) hands over what changed
since a :class:`Cursor`, and the indexes apply it: new rows are appended (a BM25 segment, an
exact block, or vectors filed into the IVF cells trained already), removed ones marked dead.
BM25 takes its statistics at query time and exact search is exact, so the result is the same
as a rebuild; only the IVF cells age, and tombstones and segments pile up. When the rows
changed since the last full build pass ``drift`` of it (or the exact index outgrows
``ann_threshold``), a full rebuild runs in a background thread and is swapped in atomically
once it has caught up; until then every search is served by the current view. Each version
(:class:`View`) is immutable, so a search never waits for a writer; only the IVF index is
shared between versions, behind its own lock.

A view is saved (``cache_dir``) after each full build; another process loads it and applies
the changes since, as long as the store's log still reaches back that far.

Every search of a view sees one moment of the store: :meth:`LocalIndexes.pinned` keeps the
view a thread is using for a whole hybrid search.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from lamina.retrieval.derived.bm25 import BM25, terms
from lamina.retrieval.derived.dense import IVFDenseIndex, top_k
from lamina.retrieval.store.base import Candidate, Filters

__all__ = [
    "ANN_THRESHOLD",
    "DRIFT",
    "ChangeLog",
    "Changes",
    "Cursor",
    "LocalIndexes",
    "View",
]

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
DocumentId = tuple[str, str]  # (collection, id)

#: Above this many chunks the dense index is approximate (IVF). Exact search reads every
#: vector (300 MB a query at 200k × 384: tens of ms on two cores, linear in n), while IVF
#: stays around a millisecond of CPU at 100k and a few at 1M, with recall@10 ≥ 0.95 against
#: exact (``benchmarks/dense_scale.py``). Below it, exact search is fast enough and exact.
ANN_THRESHOLD = 200_000

#: Rows changed since the last full build, as a share of it, that start a background rebuild
#: (IVF cells trained on the old data, tombstones, many small segments).
DRIFT = 0.2

#: Changes below this many rows never start a rebuild: small indexes stay incremental.
MIN_REBUILD_ROWS = 10_000

#: More exact blocks or BM25 segments than this are merged (the tail, never the big base).
MAX_PIECES = 16


@dataclass(frozen=True)
class Cursor:
    """Where a view stands in a store's history: its generation, the last change-log entry
    applied, and the highest chunk key seen."""

    generation: int
    seq: int
    max_key: int


@dataclass(frozen=True)
class Changes:
    """What a store holds beyond a cursor (everything, when ``full``), read at one moment."""

    cursor: Cursor
    full: bool
    removed_documents: list[DocumentId]
    removed_chunks: list[int]
    documents: list[tuple[DocumentId, str]]  # (document, "title text"), new or replaced
    keys: Rows  # new chunks, ascending
    chunk_documents: list[DocumentId]
    chunk_texts: list[str]
    vectors: Vectors

    @property
    def size(self) -> int:
        return (
            len(self.removed_documents)
            + len(self.removed_chunks)
            + len(self.documents)
            + len(self.keys)
        )


class ChangeLog(Protocol):
    """What the indexes need of their store."""

    def generation(self) -> int: ...

    def changes(self, since: Cursor | None) -> Changes:
        """Everything after ``since`` (or everything) in one read transaction."""
        ...

    def pending(self, since: Cursor) -> int | None:
        """About how many rows :meth:`changes` would bring; None when the log no longer
        reaches back to ``since`` (a full build is needed)."""
        ...

    def matching(self, filters: Filters) -> set[int]: ...


# -- dense rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactRows:
    """Exact inner product over consecutive blocks of rows."""

    blocks: tuple[Vectors, ...]
    dimension: int

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.blocks)

    def add(self, vectors: Vectors) -> ExactRows:
        if not len(vectors):
            return self
        blocks = (*self.blocks, np.ascontiguousarray(vectors, dtype=np.float32))
        if len(blocks) > MAX_PIECES:  # keep the base as it is (it may be a memory map)
            blocks = (blocks[0], np.concatenate(blocks[1:]))
        return ExactRows(blocks, self.dimension or int(vectors.shape[1]))

    def search(self, query: Vectors, k: int, allowed: Mask) -> tuple[Rows, Vectors]:
        if not self.blocks:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = np.concatenate([b @ query for b in self.blocks]).astype(np.float32)
        scores[~allowed[: len(scores)]] = -np.inf
        return top_k(scores, min(k, int(allowed[: len(scores)].sum())))

    def vectors_of(self, rows: Rows) -> Vectors:
        whole = self.blocks[0] if len(self.blocks) == 1 else np.concatenate(self.blocks)
        return np.asarray(whole[rows], dtype=np.float32)


@dataclass(frozen=True)
class ApproximateRows:
    """An IVF index shared by the views built on it; a view sees only its first ``size``
    rows (later ones belong to newer views, removed ones are gone from the index)."""

    index: IVFDenseIndex
    size: int

    def add(self, vectors: Vectors) -> ApproximateRows:
        ids = np.arange(self.size, self.size + len(vectors), dtype=np.int64)
        self.index.add(vectors, ids)
        return ApproximateRows(self.index, self.size + len(vectors))

    def search(self, query: Vectors, k: int, allowed: Mask, filtered: bool) -> tuple[Rows, Vectors]:
        if filtered:
            rows, scores = self.index.search(query, k, allowed)
        else:
            # Rows newer than this view may come back too: ask for as many more as there are.
            extra = max(0, self.index.size - int(allowed.sum()))
            rows, scores = self.index.search(query, k + extra)
        keep = rows < self.size
        keep[keep] = allowed[rows[keep]]
        return rows[keep][:k], scores[keep][:k]


# -- views ---------------------------------------------------------------------------------------


_VIEW_SERIALS = itertools.count()


@dataclass(frozen=True)
class View:
    """The indexes at one cursor. Chunk row ``r`` is the chunk ``keys[r]`` of the document row
    ``chunk_documents[r]``; ``chunks.alive`` says which chunk rows still exist."""

    cursor: Cursor
    keys: Rows
    chunk_documents: Rows
    chunks: BM25
    documents: BM25
    dense: ExactRows | ApproximateRows
    built: int  # chunk rows at the last full build
    changed: int  # chunk rows added or removed since
    # Which view this is: a rebuild at the same cursor lays rows out anew, so anything cached
    # per row (filter masks) is keyed by the view, never by its cursor.
    serial: int = field(default_factory=lambda: next(_VIEW_SERIALS), init=False, compare=False)

    @property
    def live(self) -> int:
        return self.chunks.live


class LocalIndexes:
    """Keeps a :class:`View` of a :class:`ChangeLog` current; see the module docstring.

    Thread-safe. ``view()`` brings the view up to the store (applying the changes since) and
    never waits for a rebuild; only the first build of a process with nothing saved blocks,
    as there is nothing else to serve.
    """

    def __init__(
        self,
        source: ChangeLog,
        cache_dir: Path | None,
        *,
        ann_threshold: int = ANN_THRESHOLD,
        drift: float = DRIFT,
        min_rebuild_rows: int = MIN_REBUILD_ROWS,
    ) -> None:
        self.source = source
        self.cache_dir = cache_dir
        self.ann_threshold = ann_threshold
        self.drift = drift
        self.min_rebuild_rows = min_rebuild_rows
        self._view: View | None = None
        self._documents: dict[DocumentId, int] = {}  # of the newest view; changed under _update
        self._update = threading.Lock()
        self._rebuilding: threading.Thread | None = None
        self._pinned = threading.local()
        self._masks: OrderedDict[tuple[str, int], Mask] = OrderedDict()
        self._masks_lock = threading.Lock()
        self._state = threading.Lock()
        self.closed = False
        #: Full builds done by this process (tests and benchmarks read it).
        self.builds = 0

    # -- keeping current ------------------------------------------------------------------------

    def view(self) -> View:
        """The current view, brought up to the store's generation when that is cheap."""
        pinned: View | None = getattr(self._pinned, "view", None)
        if pinned is not None:
            return pinned
        current = self._view
        if current is None:
            with self._update:
                if self._view is None:
                    self._view, self._documents = self._first()
            return self._view
        if current.cursor.generation == self.source.generation():
            return current
        if not self._update.acquire(blocking=False):
            return current  # another thread is applying the same changes: serve what we have
        try:
            current = self._view
            assert current is not None
            if current.cursor.generation == self.source.generation():
                return current
            if self.source.pending(current.cursor) is None:  # the log no longer reaches back
                self.rebuild_in_background()
                return current
            self._view = self._apply(current, self._documents, self.source.changes(current.cursor))
            if self._drifted(self._view):
                self.rebuild_in_background()
            return self._view
        finally:
            self._update.release()

    def refresh(self) -> View:
        """Bring the indexes fully up to date now (waiting for a rebuild in progress, building
        synchronously if the log no longer reaches back)."""
        thread = self._rebuilding
        if thread is not None:
            thread.join()
        with self._update:
            view = self._view
            if view is None:
                self._view, self._documents = self._first()
            elif view.cursor.generation != self.source.generation():
                if self.source.pending(view.cursor) is None:
                    self._view, self._documents = self._build(self.source.changes(None))
                else:
                    changes = self.source.changes(view.cursor)
                    self._view = self._apply(view, self._documents, changes)
            assert self._view is not None
            return self._view

    @contextmanager
    def pinned(self) -> Iterator[View]:
        """Searches in this block (on this thread) all use one view."""
        if getattr(self._pinned, "view", None) is not None:
            yield self._pinned.view
            return
        self._pinned.view = view = self.view()
        try:
            yield view
        finally:
            self._pinned.view = None

    def _first(self) -> tuple[View, dict[DocumentId, int]]:
        loaded = self._load()
        if loaded is not None:
            view, documents = loaded
            pending = self.source.pending(view.cursor)
            if pending is not None:
                if pending:
                    view = self._apply(view, documents, self.source.changes(view.cursor))
                return view, documents
        return self._build(self.source.changes(None))

    def _drifted(self, view: View) -> bool:
        if view.changed > self.drift * max(view.built, self.min_rebuild_rows):
            return True
        if isinstance(view.dense, ExactRows):
            return view.live > self.ann_threshold
        return view.live < self.ann_threshold // 2  # shrank: exact search is cheap again

    def rebuild_in_background(self) -> None:
        """Start a full rebuild (unless one is running); it is swapped in once caught up."""
        with self._state:
            if self._rebuilding is not None or self.closed:
                return
            self._rebuilding = threading.Thread(
                target=self._rebuild, name="lamina-index-rebuild", daemon=True
            )
            self._rebuilding.start()

    def _rebuild(self) -> None:
        try:
            view, documents = self._build(self.source.changes(None))
            with self._update:
                if self.closed:
                    return
                if view.cursor.generation != self.source.generation():
                    view = self._apply(view, documents, self.source.changes(view.cursor))
                self._view, self._documents = view, documents
            log.info("search indexes rebuilt in the background (%d chunks)", view.live)
        except Exception:  # a search keeps the old view; the next drift tries again
            log.exception("rebuilding the search indexes failed")
        finally:
            self._rebuilding = None

    # -- building and applying changes ----------------------------------------------------------

    def _build(self, changes: Changes) -> tuple[View, dict[DocumentId, int]]:
        started = time.perf_counter()
        documents = {doc: row for row, (doc, _) in enumerate(changes.documents)}
        chunk_documents = np.fromiter(
            (documents[d] for d in changes.chunk_documents),
            dtype=np.int64,
            count=len(changes.chunk_documents),
        )
        vectors = changes.vectors
        dense: ExactRows | ApproximateRows
        if len(vectors) > self.ann_threshold:
            dense = ApproximateRows(IVFDenseIndex.build(vectors), len(vectors))
        else:
            dense = ExactRows((vectors,) if len(vectors) else (), int(vectors.shape[1]))
        view = View(
            changes.cursor,
            changes.keys,
            chunk_documents,
            BM25.empty().add([terms(t) for t in changes.chunk_texts]),
            BM25.empty().add([terms(t) for _, t in changes.documents]),
            dense,
            len(changes.keys),
            0,
        )
        self.builds += 1
        log.info(
            "built search indexes over %d chunks in %.2fs",
            len(changes.keys),
            time.perf_counter() - started,
        )
        self._save(view, documents)
        return view, documents

    def _apply(self, view: View, documents: dict[DocumentId, int], changes: Changes) -> View:
        """The next view: ``changes`` applied to ``view`` (``documents`` is updated in place)."""
        # A document listed as new but already known was replaced: its old row goes too.
        gone = [*changes.removed_documents, *(d for d, _ in changes.documents)]
        doc_rows = [documents.pop(d) for d in gone if d in documents]
        removed = np.asarray(sorted(changes.removed_chunks), dtype=np.int64)
        chunk_rows = np.searchsorted(view.keys, removed)
        found = chunk_rows < len(view.keys)
        found[found] = view.keys[chunk_rows[found]] == removed[found]
        chunk_rows = chunk_rows[found]
        chunk_rows = chunk_rows[view.chunks.alive[chunk_rows]]
        documents_index = view.documents.delete(doc_rows)
        chunks_index = view.chunks.delete(chunk_rows)
        first_doc = documents_index.size
        for offset, (doc, _) in enumerate(changes.documents):
            documents[doc] = first_doc + offset
        documents_index = documents_index.add([terms(t) for _, t in changes.documents])
        chunks_index = chunks_index.add([terms(t) for t in changes.chunk_texts])
        if len(documents_index.segments) > MAX_PIECES:
            documents_index = _merge_tail(documents_index)
        if len(chunks_index.segments) > MAX_PIECES:
            chunks_index = _merge_tail(chunks_index)
        dense = view.dense
        if isinstance(dense, ApproximateRows):
            dense.index.remove(chunk_rows)
        dense = dense.add(changes.vectors)
        new_documents = np.fromiter(
            (documents[d] for d in changes.chunk_documents),
            dtype=np.int64,
            count=len(changes.chunk_documents),
        )
        return View(
            changes.cursor,
            np.concatenate([view.keys, changes.keys]),
            np.concatenate([view.chunk_documents, new_documents]),
            chunks_index,
            documents_index,
            dense,
            view.built,
            view.changed + len(chunk_rows) + len(changes.keys),
        )

    # -- search ---------------------------------------------------------------------------------

    def search_dense(
        self, vector: Vectors, k: int, filters: Filters | None = None
    ) -> list[Candidate]:
        """The ``k`` nearest live chunks by inner product, best first."""
        view = self.view()
        if k <= 0 or view.live == 0:
            return []
        allowed = self._allowed(view, filters)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if isinstance(view.dense, ApproximateRows):
            mask = view.chunks.alive if allowed is None else allowed
            rows, scores = view.dense.search(query, k, mask, filtered=allowed is not None)
        else:
            mask = view.chunks.alive if allowed is None else allowed
            rows, scores = view.dense.search(query, k, mask)
        return [
            Candidate(int(view.keys[r]), float(s))
            for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
        ]

    def search_sparse(self, query: str, k: int, filters: Filters | None = None) -> list[Candidate]:
        """The ``k`` best live chunks by BM25 evidence: their document's score (normalised by
        the best document's), plus a tenth of their own (normalised likewise).

        Whole documents are the better BM25 unit (term statistics of a 100-token chunk are
        thin: on SciFact document-level BM25 scores 0.688 nDCG@10, chunk-level 0.663); the
        chunk's own score mostly orders the chunks of one document.
        """
        view = self.view()
        if k <= 0 or view.live == 0:
            return []
        scores = sparse_scores(view, terms(query), self._allowed(view, filters))
        rows, values = top_k(scores, k)
        return [
            Candidate(int(view.keys[r]), float(s))
            for r, s in zip(rows.tolist(), values.tolist(), strict=True)
            if s > 0
        ]

    def vectors_of_keys(self, keys: Sequence[int]) -> Vectors | None:
        """Vectors of these chunks from the current view, or None if one is not in it."""
        view = self.view()
        wanted = np.asarray(keys, dtype=np.int64)
        rows = np.searchsorted(view.keys, wanted)
        if not len(wanted) or (rows >= len(view.keys)).any():
            return None
        if not (view.keys[rows] == wanted).all():
            return None
        if isinstance(view.dense, ApproximateRows):
            return view.dense.index.vectors_of(rows)
        return view.dense.vectors_of(rows)

    def _allowed(self, view: View, filters: Filters | None) -> Mask | None:
        """Live rows that match the filters (None: no filter). Computed in the store, cached
        per view: the server asks for the same collections again and again."""
        if not filters:
            return None
        name = json.dumps(filters, sort_keys=True, default=str)
        cache_key = (name, view.serial)
        with self._masks_lock:
            cached = self._masks.get(cache_key)
            if cached is not None:
                self._masks.move_to_end(cache_key)
                return cached
        keys = np.fromiter(self.source.matching(filters), dtype=np.int64)
        keys.sort()
        rows = np.searchsorted(view.keys, keys)
        valid = rows < len(view.keys)
        rows, keys = rows[valid], keys[valid]
        rows = rows[view.keys[rows] == keys]
        mask = np.zeros(len(view.keys), dtype=bool)
        mask[rows] = True
        mask &= view.chunks.alive
        with self._masks_lock:
            self._masks[cache_key] = mask
            while len(self._masks) > 32:
                self._masks.popitem(last=False)
        return mask

    # -- persistence ----------------------------------------------------------------------------

    def _save(self, view: View, documents: dict[DocumentId, int]) -> None:
        if self.cache_dir is None or view.live == 0 or self.closed:
            return
        name = f"g{view.cursor.generation}-s{view.cursor.seq}"
        final = self.cache_dir / name
        temporary = self.cache_dir / f".{name}-{uuid.uuid4().hex[:8]}"
        try:
            temporary.mkdir(parents=True)
            np.save(temporary / "keys.npy", view.keys)
            np.save(temporary / "chunk_documents.npy", view.chunk_documents)
            by_row = sorted(documents.items(), key=lambda item: item[1])
            (temporary / "documents.json").write_text(
                json.dumps([[c, i, row] for (c, i), row in by_row])
            )
            view.chunks.save(temporary / "bm25-chunks")
            view.documents.save(temporary / "bm25-documents")
            done: dict[str, object] = {
                "generation": view.cursor.generation,
                "seq": view.cursor.seq,
                "max_key": view.cursor.max_key,
                "built": view.built,
            }
            if isinstance(view.dense, ApproximateRows):
                view.dense.index.save(temporary / "dense.faiss")
                done.update(dense="ivf", nprobe=view.dense.index.nprobe, size=view.dense.size)
            else:
                vectors = view.dense.vectors_of(np.arange(view.dense.size))
                np.save(temporary / "vectors.npy", vectors)
                done.update(dense="exact", dimension=view.dense.dimension)
            (temporary / "done.json").write_text(json.dumps(done))
            try:
                os.rename(temporary, final)
            except OSError:  # another process saved the same generation first
                shutil.rmtree(temporary, ignore_errors=True)
            for old in self.cache_dir.iterdir():
                if old.name != name and not old.name.startswith("."):
                    shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:  # a read-only index directory: search still works from memory
            log.warning("could not save search indexes to %s: %s", self.cache_dir, exc)
            shutil.rmtree(temporary, ignore_errors=True)

    def _load(self) -> tuple[View, dict[DocumentId, int]] | None:
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return None
        saved = sorted(
            (p for p in self.cache_dir.iterdir() if (p / "done.json").is_file()),
            key=lambda p: p.stat().st_mtime,
        )
        for folder in reversed(saved):
            try:
                return self._read(folder)
            # A damaged cache is just rebuilt (faiss reports a bad file as RuntimeError).
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
                log.warning("rebuilding search indexes: %s", exc)
        return None

    def _read(self, folder: Path) -> tuple[View, dict[DocumentId, int]]:
        done = json.loads((folder / "done.json").read_text())
        keys = np.load(folder / "keys.npy")
        chunk_documents = np.load(folder / "chunk_documents.npy")
        documents = {
            (str(c), str(i)): int(row)
            for c, i, row in json.loads((folder / "documents.json").read_text())
        }
        chunks = BM25.load(folder / "bm25-chunks")
        document_index = BM25.load(folder / "bm25-documents")
        dense: ExactRows | ApproximateRows
        if done["dense"] == "ivf":
            index = IVFDenseIndex.load(
                folder / "dense.faiss", nprobe=int(done["nprobe"]), trained=int(done["size"])
            )
            dense = ApproximateRows(index, int(done["size"]))
        else:
            vectors = np.load(folder / "vectors.npy", mmap_mode="r")
            dense = ExactRows((vectors,) if len(vectors) else (), int(done["dimension"]))
        if not (len(keys) == len(chunk_documents) == chunks.size == dense.size):
            raise ValueError(f"the saved indexes in {folder} disagree on the number of chunks")
        cursor = Cursor(int(done["generation"]), int(done["seq"]), int(done["max_key"]))
        return View(
            cursor, keys, chunk_documents, chunks, document_index, dense, int(done["built"]), 0
        ), documents

    def close(self) -> None:
        self.closed = True


def sparse_scores(
    view: View, query: Sequence[str], allowed: Mask | None
) -> npt.NDArray[np.float32]:
    """BM25 evidence for every chunk row of ``view``: see :meth:`LocalIndexes.search_sparse`."""
    doc_mask = None
    if allowed is not None:
        doc_mask = np.zeros(view.documents.size, dtype=bool)
        doc_mask[view.chunk_documents[allowed]] = True
    documents = view.documents.scores(query, doc_mask)
    chunks = view.chunks.scores(query, allowed)
    top_doc, top_chunk = float(documents.max(initial=0.0)), float(chunks.max(initial=0.0))
    if top_doc <= 0.0:
        return np.zeros(len(view.keys), dtype=np.float32)
    scores = documents[view.chunk_documents] / top_doc
    if top_chunk > 0.0:
        scores = scores + 0.1 * chunks / top_chunk
    keep = view.chunks.alive if allowed is None else allowed
    return np.where(keep, scores, 0.0).astype(np.float32)


def _merge_tail(index: BM25) -> BM25:
    """``index`` with every segment after the first merged into one (the base is left alone:
    merging it would cost as much as a rebuild)."""
    base, *tail = index.segments
    merged = replace(index, segments=tuple(tail)).merged()
    return replace(merged, segments=(base, *merged.segments))
