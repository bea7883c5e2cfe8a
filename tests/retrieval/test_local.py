"""The SQLite store's local indexes: changes applied instead of rebuilds, rebuilds in the
background that never block a search, saved views caught up by the next process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lamina.retrieval.derived import local as local_module
from lamina.retrieval.derived.local import ApproximateRows, ExactRows, LocalIndexes
from lamina.retrieval.store import sqlite as sqlite_module
from lamina.retrieval.store.sqlite import SQLiteStore
from lamina.testing.stores import (
    EMBEDDER,
    _same_ranking,
    item,
    reference_dense,
    reference_sparse,
)
from tests.conftest import require

TOPICS = ["llama inference", "vector search", "prompt templates", "agent tools", "solar power"]


def note(n: int, version: int = 0) -> tuple:  # type: ignore[type-arg]
    topic = TOPICS[n % len(TOPICS)]
    text = f"note {n} version {version} about {topic} and {TOPICS[(n + 2) % 5]} " * 2
    return item(f"n{n:03d}.md", text.strip(), title=f"Note {n}", words=6)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    handle = SQLiteStore(tmp_path / "idx")
    yield handle
    handle.close()


def check(store: SQLiteStore, queries: tuple[str, ...] = ("vector search", "note 7 solar")) -> None:
    """Search results equal exact search over the store's data, as of now."""
    for query in queries:
        vector = EMBEDDER.embed_query(query)
        _same_ranking(store.search_dense(vector, 40), reference_dense(store, vector, 10_000), 40)
        _same_ranking(store.search_sparse(query, 40), reference_sparse(store, query, 10_000), 40)
        odd = {"collection": "odd"}
        expected = reference_sparse(store, query, 10_000, odd)
        _same_ranking(store.search_sparse(query, 40, odd), expected, 40)


def test_changes_are_applied_not_rebuilt(store: SQLiteStore, tmp_path: Path) -> None:
    for n in range(30):
        store.add("odd" if n % 2 else "even", *note(n))
    check(store)
    assert store.local.builds == 1
    writer = SQLiteStore(tmp_path / "idx")  # another handle: as another process would write
    try:
        writer.add_many("odd", [note(n, version=1) for n in range(1, 30, 4)])  # replaced
        writer.delete("even", [note(n)[0].document.id for n in range(0, 30, 6)])
        writer.add("odd", *note(77))
        check(store)
        writer.delete("odd", [note(77)[0].document.id])
        writer.add("even", *note(78))
        check(store)
    finally:
        writer.close()
    assert store.local.builds == 1  # every change was applied, none rebuilt
    view = store.local.view()
    assert view.changed > 0 and view.live == store.count()[1]


def test_a_drifted_index_rebuilds_in_the_background_without_blocking_search(
    store: SQLiteStore,
) -> None:
    local = store.local
    local.min_rebuild_rows = 0  # drift is then 20% of the rows built
    for n in range(20):
        store.add("odd", *note(n))
    check(store)
    gate = threading.Event()
    building = threading.Event()
    build = local._build

    def slow_build(changes: local_module.Changes) -> tuple[local_module.View, dict]:  # type: ignore[type-arg]
        if threading.current_thread().name == "lamina-index-rebuild":
            building.set()
            assert gate.wait(30)
        return build(changes)

    local._build = slow_build  # type: ignore[method-assign]
    store.add_many("odd", [note(n) for n in range(20, 30)])  # 50% new rows: drifted
    began = time.monotonic()
    check(store)  # applies the changes and starts a rebuild, without waiting for it
    assert building.wait(10)
    for n in range(30, 33):  # the rebuild is stuck; writes and searches go on
        store.add("odd", *note(n))
        check(store)
    assert time.monotonic() - began < 20 and local.builds == 1
    gate.set()
    view = local.refresh()
    assert local.builds == 2
    # Built from the store as the rebuild began (30 notes), then caught up with the 3 after.
    assert view.live == store.count()[1] == view.built + view.changed
    assert view.built == store.count()[1] * 30 // 33
    check(store)


def test_a_search_does_not_wait_for_a_thread_applying_changes(store: SQLiteStore) -> None:
    for n in range(10):
        store.add("odd", *note(n))
    before = store.local.view()
    store.add("odd", *note(50))
    with store.local._update:  # another thread is applying the changes
        found: list[object] = []
        thread = threading.Thread(target=lambda: found.append(store.local.view()))
        thread.start()
        thread.join(5)
        assert found == [before]  # served the view it had at once
    assert store.local.view().live == before.live + 4  # and the next search catches up


def test_saved_indexes_are_loaded_and_caught_up(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "idx")
    for n in range(25):
        first.add("odd" if n % 2 else "even", *note(n))
    first.refresh()  # built and saved
    first.add_many("odd", [note(3, version=2), note(60)])
    first.delete("even", [note(4)[0].document.id])
    first.close()
    second = SQLiteStore(tmp_path / "idx")
    try:
        check(second)
        assert second.local.builds == 0  # loaded from disk, then the changes since applied
    finally:
        second.close()


def test_a_log_trimmed_past_a_view_means_a_full_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "LOG_ENTRIES", 5)
    first = SQLiteStore(tmp_path / "idx")
    for n in range(10):
        first.add("odd", *note(n))
    first.refresh()
    for version in range(1, 4):  # replacing documents logs removals: the log is trimmed
        first.add_many("odd", [note(n, version) for n in range(10)])
    first.close()
    second = SQLiteStore(tmp_path / "idx")
    try:
        check(second)
        assert second.local.builds == 1  # the saved view was too old to catch up
    finally:
        second.close()


def test_a_damaged_saved_view_is_rebuilt(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "idx")
    for n in range(12):
        first.add("odd", *note(n))
    first.refresh()
    first.close()
    for path in (tmp_path / "idx" / "derived").rglob("*.npy"):
        path.write_bytes(b"garbage")
    second = SQLiteStore(tmp_path / "idx")
    try:
        check(second)
        assert second.local.builds == 1
    finally:
        second.close()


def test_ivf_takes_new_and_removed_vectors_without_retraining(tmp_path: Path) -> None:
    require("faiss", "the IVF dense index needs it: pip install 'lamina[ann]'")
    store = SQLiteStore(tmp_path / "idx", ann_threshold=40)
    try:
        for n in range(40):
            store.add("odd", *note(n))
        view = store.local.refresh()
        assert isinstance(view.dense, ApproximateRows)
        index = view.dense.index
        new = item("zz.md", "zeppelins float on hydrogen over the solar sea", words=9)
        store.add("odd", *new)
        store.delete("odd", [note(n)[0].document.id for n in range(5)])
        view = store.local.view()
        assert isinstance(view.dense, ApproximateRows) and view.dense.index is index
        (key,) = [c.key for c in store.get([int(k) for k in view.keys]) if c.source == "zz.md"]
        assert store.search_dense(new[2][0], 1)[0].key == key  # found at once
        gone = set(store.matching({"source": [f"n{n:03d}.md" for n in range(5)]}))
        assert not gone  # they left the store...
        hits = store.search_dense(EMBEDDER.embed_query("note 2 llama inference"), 200)
        sources = {c.source for c in store.get([h.key for h in hits])}
        assert not sources & {f"n{n:03d}.md" for n in range(5)}  # ...and the index
        assert store.local.builds == 1 and index.trained == view.built == 160
    finally:
        store.close()


def test_small_indexes_stay_exact(store: SQLiteStore) -> None:
    for n in range(5):
        store.add("odd", *note(n))
    assert isinstance(store.local.refresh().dense, ExactRows)


def test_the_store_takes_its_threshold_from_the_settings(tmp_path: Path) -> None:
    from lamina.retrieval.store import open_store
    from lamina.settings import Settings

    settings = Settings(retrieval={"ann_threshold": 1234})  # type: ignore[arg-type]
    store = open_store(None, tmp_path / "idx", settings=settings)
    try:
        assert isinstance(store, SQLiteStore) and store.local.ann_threshold == 1234
    finally:
        store.close()


def test_vectors_come_from_the_view_or_the_file(store: SQLiteStore) -> None:
    loaded, chunks, vectors = item("a.md", "one two three four five six", words=2)
    store.add("docs", loaded, chunks, vectors)
    keys = sorted(store.matching({}))
    assert np.allclose(store.vectors(keys[::-1]), vectors[::-1])
    assert isinstance(store.local, LocalIndexes)


def test_a_rebuild_at_the_same_cursor_never_reuses_another_layouts_filter(tmp_path: Path) -> None:
    # Tenancy rests on the collection filter: after deletes, a full rebuild at the same cursor
    # lays rows out anew, and a filter mask cached for the old layout let other collections'
    # chunks through (dense) or failed (sparse).
    from lamina.testing.stores import EMBEDDER

    store = SQLiteStore(tmp_path / "idx")
    try:
        for n in range(30):
            store.add("odd" if n % 2 else "even", *note(n))
        store.local.view()
        store.delete("even", [note(n)[0].document.id for n in range(0, 30, 4)])
        odd = {"collection": "odd"}
        query = EMBEDDER.embed_query("vector search")
        store.search_dense(query, 40, odd)  # caches the mask of the incremental view
        before = store.local.view()
        store.local.rebuild_in_background()
        if store.local._rebuilding is not None:
            store.local._rebuilding.join()
        after = store.local.view()
        assert after.cursor == before.cursor and len(after.keys) < len(before.keys)
        allowed = store.local.source.matching(odd)
        dense = store.search_dense(query, 40, odd)
        sparse = store.search_sparse("vector search", 40, odd)
        assert dense and all(hit.key in allowed for hit in dense)
        assert sparse and all(hit.key in allowed for hit in sparse)
    finally:
        store.close()
