"""The contract every store passes, as a pytest mix-in: for a test suite, it imports pytest.

Mix :class:`StoreContract` into a test class and provide the fixture ``open_store``: a
callable that opens a new handle on one fresh, empty store (the same store on every call
within a test), so the suite can check what other handles and other writers see. Lamina runs
it against SQLiteStore and PostgresStore (``tests/retrieval/test_store_contract.py``); a
third-party store registered in ``lamina.stores`` (a Qdrant, Weaviate or Pinecone adapter)
runs it the same way::

    import pytest
    from lamina.testing.stores import StoreContract

    @pytest.fixture
    def open_store(tmp_path):
        return lambda: MyStore(tmp_path / "store")

    class TestMyStore(StoreContract):
        pass

The search cases check that ``search_dense`` finds the best inner products (exactly, on these
small stores: an ANN index this size should not miss), that filters are applied inside the
search (a narrow filter still gets every match, never a post-filtered short list), that a
search inside ``reading()`` sees one version while another handle writes, and that a second
ingest lock fails fast naming the first. ``search_sparse`` must rank like Lamina's BM25
(:func:`reference_sparse`, the semantics the local indexes and PostgreSQL share) when the class
sets ``sparse_is_lamina_bm25 = True`` (the default); a store with its own lexical ranking sets
it to False and is held to the properties any ranking has (matching text first, filters,
nothing for a query no chunk shares a word with).

:func:`item` builds a document, its chunks and their :class:`~lamina.testing.HashEmbedder`
vectors, ready for ``store.add``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from lamina.errors import ConfigError
from lamina.retrieval.derived.bm25 import BM25, terms
from lamina.retrieval.documents import Chunk, Document, LoadedDocument
from lamina.retrieval.errors import IndexBusyError
from lamina.retrieval.store.base import Candidate, Filters, IndexStore, Store
from lamina.testing import HashEmbedder

__all__ = [
    "EMBEDDER",
    "Item",
    "OpenStore",
    "StoreContract",
    "all_keys",
    "item",
    "reference_dense",
    "reference_sparse",
]

OpenStore = Callable[[], IndexStore]
Item = tuple[LoadedDocument, list[Chunk], npt.NDArray[np.float32]]

EMBEDDER = HashEmbedder()


def item(
    source: str,
    text: str,
    *,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
    page: int | None = None,
    words: int = 4,
) -> Item:
    """A document of ``text`` cut into chunks of ``words`` words, with hashed vectors."""
    document = Document.for_source(
        source,
        content_hash=str(hash(text) & 0xFFFFFFFF),
        title=title,
        metadata=metadata or {},
    )
    loaded = LoadedDocument(document=document, text=text, blocks=[])
    spans: list[tuple[int, int]] = []
    position = 0
    pieces = text.split(" ")
    for first in range(0, len(pieces), words):
        span = " ".join(pieces[first : first + words])
        start = text.index(span, position)
        spans.append((start, start + len(span)))
        position = start + len(span)
    chunks = [
        Chunk.for_span(document, text, start, end, page=page, heading_path=["Top", source])
        for start, end in spans
    ]
    vectors = EMBEDDER.embed_documents([c.contextual_text(title) for c in chunks])
    return loaded, chunks, vectors


def all_keys(store: Store) -> list[int]:
    return [int(k) for k in store.snapshot().keys]


def reference_dense(
    store: Store, vector: npt.NDArray[np.float32], k: int, filters: Filters | None = None
) -> list[Candidate]:
    """Exact inner-product search over the store's snapshot: what ``search_dense`` should
    find (ties by key)."""
    snapshot = store.snapshot()
    allowed = store.matching(filters) if filters else set(snapshot.keys.tolist())
    scores = snapshot.vectors @ vector if len(snapshot.keys) else np.zeros(0)
    ranked = sorted(
        ((int(key), float(score)) for key, score in zip(snapshot.keys, scores, strict=True)
         if int(key) in allowed),
        key=lambda pair: (-pair[1], pair[0]),
    )  # fmt: skip
    return [Candidate(key, score) for key, score in ranked[:k]]


def reference_sparse(
    store: Store, query: str, k: int, filters: Filters | None = None
) -> list[Candidate]:
    """Lamina's lexical ranking, computed from the snapshot: BM25 of the chunk's document
    (over the best document's) plus a tenth of the chunk's own BM25 (over the best chunk's);
    statistics over everything, the filter deciding which chunks (and the documents they
    belong to) compete. Only chunks with some evidence; ties by key."""
    snapshot = store.snapshot()
    words = terms(query)
    documents = BM25.build(snapshot.document_texts)
    chunks = BM25.build(snapshot.chunk_texts)
    allowed = store.matching(filters) if filters else None
    mask = None if allowed is None else np.isin(snapshot.keys, list(allowed))
    doc_mask = None
    if mask is not None:
        doc_mask = np.zeros(documents.size, dtype=bool)
        doc_mask[snapshot.chunk_documents[mask]] = True
    doc_scores = documents.scores(words, doc_mask)
    chunk_scores = chunks.scores(words, mask)
    top_doc, top_chunk = float(doc_scores.max(initial=0)), float(chunk_scores.max(initial=0))
    if top_doc <= 0:
        return []
    scores = doc_scores[snapshot.chunk_documents] / top_doc
    if top_chunk > 0:
        scores = scores + 0.1 * chunk_scores / top_chunk
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    ranked = sorted(
        ((int(key), float(score)) for key, score in zip(snapshot.keys, scores, strict=True)
         if score > 0),
        key=lambda pair: (-pair[1], pair[0]),
    )  # fmt: skip
    return [Candidate(key, score) for key, score in ranked[:k]]


def _same_ranking(got: Sequence[Candidate], ranking: Sequence[Candidate], k: int) -> None:
    """``got`` is the top ``k`` of the full ``ranking``: the same scores in the same order,
    and each key one of those with its score (tied keys may come in any order)."""
    expected = ranking[:k]
    assert len(got) == len(expected), (got, expected)
    assert np.allclose([c.score for c in got], [c.score for c in expected], atol=1e-4), (
        got,
        expected,
    )
    for candidate in got:
        tied = {c.key for c in ranking if abs(c.score - candidate.score) < 2e-4}
        assert candidate.key in tied, (candidate, expected)
    assert len({c.key for c in got}) == len(got), got


#: Word lists of the search cases: each document is about some of them.
_TOPICS = [
    "llama inference quantised weights",
    "vector search embeddings cosine",
    "prompt templates rendering strict",
    "agent tools sandbox python",
    "fine tuning adapters lora",
    "solar panels sunlight electricity",
]


def search_corpus(store: IndexStore) -> list[Item]:
    """Twelve documents of a few chunks each, in two collections, with metadata and pages."""
    items = []
    for n in range(12):
        topic, other = _TOPICS[n % len(_TOPICS)], _TOPICS[(n * 5 + 1) % len(_TOPICS)]
        text = f"note {n} on {topic} and then {other} " + " ".join([topic] * (1 + n % 3))
        loaded, chunks, vectors = item(
            f"doc{n:02d}.md",
            text,
            title=f"Note {n}",
            metadata={"parity": n % 2, "year": 2020 + n % 3},
            page=1 + n % 4,
            words=5,
        )
        items.append((loaded, chunks, vectors))
        store.add("even" if n % 2 == 0 else "odd", loaded, chunks, vectors)
    return items


class StoreContract:
    """Add / replace / delete / get / count / snapshot / filters / meta / journal semantics,
    and search: dense, sparse, filters pushed down, one moment per reading block, one ingest
    at a time."""

    #: Whether ``search_sparse`` ranks by Lamina's BM25 (held to :func:`reference_sparse`).
    sparse_is_lamina_bm25 = True

    @pytest.fixture
    def store(self, open_store: OpenStore) -> Iterator[IndexStore]:
        handle = open_store()
        yield handle
        handle.close()

    # -- writes and reads -----------------------------------------------------------------------

    def test_is_an_index_store(self, store: IndexStore) -> None:
        assert isinstance(store, IndexStore)
        assert store.count() == (0, 0) and store.collections() == []
        assert store.get([1, 2]) == [] and store.matching({}) == set()

    def test_add_then_get_round_trips_every_field(self, store: IndexStore) -> None:
        loaded, chunks, vectors = item(
            "a.md",
            "alpha beta gamma delta epsilon zeta eta theta iota",
            title="Greek",
            metadata={"format": "markdown", "year": 2020, "nested": {"x": [1, "y"]}},
            page=2,
        )
        store.add("docs", loaded, chunks, vectors)
        keys = all_keys(store)
        assert len(keys) == 3 and keys == sorted(keys)
        got = store.get(keys)
        assert [g.chunk for g in got] == chunks
        first = got[0]
        assert (first.collection, first.source, first.title) == ("docs", "a.md", "Greek")
        assert first.metadata == {"format": "markdown", "year": 2020, "nested": {"x": [1, "y"]}}
        assert first.chunk.heading_path == ["Top", "a.md"] and first.chunk.page == 2
        assert store.document_text("docs", loaded.document.id) == loaded.text
        assert store.document_text("docs", "no-such-id") is None
        assert store.document_text("other", loaded.document.id) is None

    def test_get_keeps_the_order_asked_and_skips_missing_keys(self, store: IndexStore) -> None:
        store.add("docs", *item("a.md", "one two three four five six seven eight nine"))
        keys = all_keys(store)
        wanted = [keys[2], 10_000_000, keys[0], keys[1]]
        assert [c.key for c in store.get(wanted)] == [keys[2], keys[0], keys[1]]
        assert store.get([]) == []

    def test_add_replaces_a_document_by_id_and_by_source(self, store: IndexStore) -> None:
        loaded, _, _ = first = item("a.md", "old text of the first document here")
        store.add("docs", *first)
        old_keys = set(all_keys(store))
        store.add("docs", *item("a.md", "new words"))  # same source, so same id
        assert store.count() == (1, 1)
        assert not old_keys & set(all_keys(store))
        assert store.document_text("docs", loaded.document.id) == "new words"
        # Another id with the same source replaces it too (a file re-keyed under a new id).
        renamed, chunks, vectors = item("a.md", "renamed text")
        moved = renamed.model_copy(
            update={"document": renamed.document.model_copy(update={"id": "other-id"})}
        )
        moved_chunks = [c.model_copy(update={"document_id": "other-id"}) for c in chunks]
        store.add("docs", moved, moved_chunks, vectors)
        assert store.count() == (1, 1)
        assert store.sources("docs") == {"a.md": ("other-id", renamed.document.content_hash)}
        assert store.document_text("docs", loaded.document.id) is None

    def test_add_many_applies_items_in_order(self, store: IndexStore) -> None:
        store.add_many(
            "docs",
            [
                item("a.md", "first version of a"),
                item("b.md", "only version of b"),
                item("a.md", "second version of a, which wins"),
            ],
        )
        assert store.count() == (2, 3)
        texts = {c.chunk.text for c in store.get(all_keys(store))}
        assert texts == {"only version of b", "second version of a,", "which wins"}
        assert sorted(store.sources("docs")) == ["a.md", "b.md"]

    def test_collections_are_separate(self, store: IndexStore) -> None:
        store.add("one", *item("a.md", "shared source in collection one"))
        store.add("two", *item("a.md", "shared source in two"))
        store.add("two", *item("b.md", "b"))
        assert store.collections() == ["one", "two"]
        assert store.count("one") == (1, 2) and store.count("two") == (2, 2)
        assert store.count() == (3, 4)
        assert set(store.sources("two")) == {"a.md", "b.md"}
        assert store.sources("three") == {}

    def test_delete_removes_documents_and_their_chunks(self, store: IndexStore) -> None:
        a = item("a.md", "alpha text here")
        b = item("b.md", "beta text here")
        store.add_many("docs", [a, b])
        store.add("kept", *a)
        assert store.delete("docs", [a[0].document.id, "no-such-id"]) == 1
        assert store.count("docs") == (1, 1) and store.count("kept") == (1, 1)
        assert {c.source for c in store.get(all_keys(store))} == {"a.md", "b.md"}
        assert store.delete("docs", []) == 0
        assert store.delete("docs", [b[0].document.id]) == 1
        assert store.collections() == ["kept"]

    def test_documents_without_chunks_are_stored(self, store: IndexStore) -> None:
        loaded, _, _ = item("empty.md", "x")
        store.add("docs", loaded, [], np.zeros((0, EMBEDDER.dimension), dtype=np.float32))
        assert store.count() == (1, 0)
        assert store.snapshot().document_texts == ["x"]

    # -- generation and snapshots ---------------------------------------------------------------

    def test_generation_moves_with_every_committed_write(
        self, store: IndexStore, open_store: OpenStore
    ) -> None:
        start = store.generation()
        store.add("docs", *item("a.md", "a"))
        store.add_many("docs", [item("b.md", "b"), item("c.md", "c")])
        assert store.generation() == start + 2
        store.add_many("docs", [])
        assert store.delete("docs", []) == 0
        store.set_meta("embedder", "x")
        store.end_run(store.begin_run(), {})
        assert store.generation() == start + 2
        store.delete("docs", ["no-such-id"])  # a delete is a write even when nothing matched
        assert store.generation() == start + 3
        other = open_store()
        try:
            assert other.generation() == start + 3  # another handle sees committed writes
            other.delete("docs", [item("a.md", "a")[0].document.id])
            assert store.generation() == start + 4 and store.count() == (2, 2)
        finally:
            other.close()

    def test_snapshot_holds_what_the_derived_indexes_need(self, store: IndexStore) -> None:
        empty = store.snapshot()
        assert empty.keys.size == 0 and empty.vectors.shape[0] == 0 and empty.document_texts == []
        b = item("b.md", "beta gamma delta epsilon zeta", title="Bee")
        a = item("a.md", "alpha beta", title=None)
        c = item("c.md", "gamma", title="Sea")
        store.add("x", *b)
        store.add("x", *a)
        store.add("w", *c)
        snap = store.snapshot()
        assert snap.generation == store.generation()
        assert snap.keys.dtype == np.int64 and list(snap.keys) == sorted(snap.keys)
        assert len(snap.keys) == len(snap.chunk_texts) == len(snap.vectors) == 4
        assert snap.vectors.dtype == np.float32
        expected_vectors = np.concatenate([b[2], a[2], c[2]])
        assert np.array_equal(snap.vectors, expected_vectors)
        assert snap.chunk_texts == [
            chunk.contextual_text(loaded.document.title)
            for loaded, chunks, _ in (b, a, c)
            for chunk in chunks
        ]
        # Documents in (collection, id) order, as "title text"; chunks point at their rows.
        ordered = sorted(
            [("x", b[0]), ("x", a[0]), ("w", c[0])], key=lambda p: (p[0], p[1].document.id)
        )
        assert snap.document_texts == [
            f"{loaded.document.title or ''} {loaded.text}".strip() for _, loaded in ordered
        ]
        owners = [(col, loaded.document.id) for col, loaded in ordered]
        for row, chunk in enumerate(store.get([int(k) for k in snap.keys])):
            owner = owners[snap.chunk_documents[row]]
            assert owner == (chunk.collection, chunk.chunk.document_id)

    def test_snapshot_is_one_consistent_moment_while_another_handle_writes(
        self, store: IndexStore, open_store: OpenStore
    ) -> None:
        def version(v: int) -> list[Item]:
            return [
                item(f"{name}.md", f"{name} at version {v} " + "filler words " * 6)
                for name in ("a", "b")
            ]

        store.add_many("docs", version(0))
        base = store.generation()
        writes = 30
        writer = open_store()
        failures: list[BaseException] = []

        def write() -> None:
            try:
                for v in range(1, writes + 1):
                    writer.add_many("docs", version(v))
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        seen: set[int] = set()
        try:
            while thread.is_alive() or not seen:
                snap = store.snapshot()
                v = snap.generation - base
                seen.add(v)
                assert len(snap.document_texts) == 2, v
                assert all(f"at version {v} " in t for t in snap.document_texts), v
                heads = {t.rsplit("\n", 1)[-1] for t in snap.chunk_texts if "version" in t}
                assert heads == {f"a at version {v}", f"b at version {v}"}, v
                assert len(snap.keys) == len(snap.vectors) == len(snap.chunk_texts)
        finally:
            thread.join()
            writer.close()
        assert not failures, failures
        assert store.snapshot().generation == base + writes

    # -- filters --------------------------------------------------------------------------------

    def test_matching_filters_by_fields_and_metadata(self, store: IndexStore) -> None:
        pdf = item("a.pdf", "one two three four five", metadata={"format": "pdf", "year": 2020})
        pdf = (pdf[0], [c.model_copy(update={"page": 3}) for c in pdf[1]], pdf[2])
        md = item("b.md", "six seven", metadata={"format": "markdown", "draft": True})
        txt = item("c.txt", "eight", metadata={"format": "text", "year": 2021, "none": None})
        store.add_many("docs", [pdf, md])
        store.add("notes", *txt)
        keys: dict[str, set[int]] = {}
        for chunk in store.get(all_keys(store)):
            keys.setdefault(chunk.source, set()).add(chunk.key)
        assert len(keys["a.pdf"]) == 2
        everything = set(all_keys(store))
        assert store.matching({}) == everything
        assert store.matching({"collection": "docs"}) == keys["a.pdf"] | keys["b.md"]
        assert store.matching({"collection": ["notes", "nope"]}) == keys["c.txt"]
        assert store.matching({"source": "b.md"}) == keys["b.md"]
        assert store.matching({"document_id": pdf[0].document.id}) == keys["a.pdf"]
        assert store.matching({"page": 3}) == keys["a.pdf"]
        assert store.matching({"page": [1, 3]}) == keys["a.pdf"]
        assert store.matching({"format": "pdf"}) == keys["a.pdf"]
        assert store.matching({"format": ["pdf", "text"]}) == keys["a.pdf"] | keys["c.txt"]
        assert store.matching({"year": 2020}) == keys["a.pdf"]
        assert store.matching({"year": "2020"}) == set()  # JSON types matter
        assert store.matching({"draft": True}) == keys["b.md"]
        assert store.matching({"format": "pdf", "collection": "notes"}) == set()  # AND
        assert store.matching({"format": "pdf", "page": 3, "year": [2019, 2020]}) == keys["a.pdf"]
        assert store.matching({"missing-key": "x"}) == set()
        assert store.matching({"none": None}) == set()  # like SQL: NULL matches nothing
        assert store.matching({"format": []}) == set()
        with pytest.raises(ConfigError, match="Filter key"):
            store.matching({"bad key'); --": 1})

    # -- settings and the journal ---------------------------------------------------------------

    def test_meta_is_a_small_key_value_store(
        self, store: IndexStore, open_store: OpenStore
    ) -> None:
        assert store.get_meta("embedder") is None
        store.set_meta("embedder", "hash-test")
        store.set_meta("embedder", "minilm")
        store.set_meta("dimension", "384")
        assert (store.get_meta("embedder"), store.get_meta("dimension")) == ("minilm", "384")
        other = open_store()
        try:
            assert other.get_meta("embedder") == "minilm"
        finally:
            other.close()

    def test_journal_records_runs_and_marks_interrupted_ones(self, store: IndexStore) -> None:
        assert store.runs() == []
        first = store.begin_run()
        assert [(r["id"], r["status"], r["finished"]) for r in store.runs()] == [
            (first, "running", None)
        ]
        second = store.begin_run()  # the first never ended: it was interrupted
        store.end_run(second, {"added": 3, "skipped": [{"source": "x", "reason": "y"}]})
        third = store.begin_run()
        store.end_run(third, {}, status="failed")
        runs = store.runs()
        assert [r["id"] for r in runs] == [first, second, third]
        assert first < second < third
        assert [r["status"] for r in runs] == ["interrupted", "done", "failed"]
        assert runs[1]["summary"] == {"added": 3, "skipped": [{"source": "x", "reason": "y"}]}
        assert runs[0]["summary"] is None and runs[2]["summary"] == {}
        assert all(isinstance(r["started"], float) for r in runs)
        assert runs[1]["started"] <= runs[1]["finished"]

    # -- search -----------------------------------------------------------------------------

    def test_an_empty_store_finds_nothing(self, store: IndexStore) -> None:
        assert store.search_dense(EMBEDDER.embed_query("anything"), 5) == []
        assert store.search_sparse("anything at all", 5) == []
        store.refresh()

    def test_search_dense_finds_the_best_inner_products(self, store: IndexStore) -> None:
        search_corpus(store)
        for query in ("vector search embeddings", "solar sunlight", "note 7 agent tools"):
            vector = EMBEDDER.embed_query(query)
            for k in (1, 5, 200):
                got = store.search_dense(vector, k)
                _same_ranking(got, reference_dense(store, vector, 10_000), k)
        assert store.search_dense(EMBEDDER.embed_query("solar"), 0) == []

    @pytest.mark.parametrize(
        "filters",
        [
            {"collection": "odd"},
            {"collection": ["even", "none"], "year": 2021},
            {"page": 3},
            {"source": "doc05.md"},
            {"parity": 1, "page": [2, 4]},
            {"year": 1999},
        ],
    )
    def test_search_dense_applies_filters_inside_the_search(
        self, store: IndexStore, filters: Filters
    ) -> None:
        search_corpus(store)
        vector = EMBEDDER.embed_query("solar panels sunlight")
        allowed = store.matching(filters)
        for k in (3, 1000):
            got = store.search_dense(vector, k, filters)
            assert {c.key for c in got} <= allowed
            assert len(got) == min(k, len(allowed))  # a filter never leaves a short list
            _same_ranking(got, reference_dense(store, vector, 10_000, filters), k)

    def test_search_sparse_finds_the_texts_that_share_the_words(self, store: IndexStore) -> None:
        search_corpus(store)
        hits = store.search_sparse("sandbox python agent", 5)
        assert hits and [c.score for c in hits] == sorted((c.score for c in hits), reverse=True)
        best = store.get([hits[0].key])[0]
        assert "sandbox" in best.chunk.text or "agent" in best.chunk.text
        assert store.search_sparse("zebra xylophone", 5) == []  # no word in common
        assert store.search_sparse("the of and", 5) == []  # stopwords only
        assert store.search_sparse("solar", 0) == []

    @pytest.mark.parametrize(
        "query",
        ["sandbox python agent", "Solar panels, sunlight!", "note 3 lora lora", "inference"],
    )
    def test_search_sparse_ranks_like_lamina_bm25(self, store: IndexStore, query: str) -> None:
        if not self.sparse_is_lamina_bm25:
            pytest.skip("this store ranks text its own way")
        search_corpus(store)
        for k in (3, 100):
            _same_ranking(store.search_sparse(query, k), reference_sparse(store, query, 10_000), k)

    @pytest.mark.parametrize(
        "filters",
        [{"collection": "odd"}, {"page": 2}, {"year": [2020, 2022], "parity": 0}, {"year": 1999}],
    )
    def test_search_sparse_applies_filters_inside_the_search(
        self, store: IndexStore, filters: Filters
    ) -> None:
        search_corpus(store)
        query = "solar sunlight note"
        got = store.search_sparse(query, 1000, filters)
        allowed = store.matching(filters)
        assert {c.key for c in got} <= allowed
        matching = [k for k in allowed if "note" in store.get([k])[0].chunk.text.lower()]
        assert {c.key for c in got} >= set(matching)  # every match with evidence is found
        if self.sparse_is_lamina_bm25:
            _same_ranking(got, reference_sparse(store, query, 10_000, filters), 1000)

    def test_search_follows_writes_and_deletes(
        self, store: IndexStore, open_store: OpenStore
    ) -> None:
        items = search_corpus(store)
        vector = EMBEDDER.embed_query("zeppelins hydrogen")
        assert store.search_sparse("zeppelins", 5) == []
        other = open_store()
        try:
            other.add("odd", *item("zep.md", "zeppelins float on hydrogen", words=3))
            other.delete("even", [items[0][0].document.id])
        finally:
            other.close()
        found = store.search_sparse("zeppelins hydrogen", 5)
        assert found and {store.get([c.key])[0].source for c in found} == {"zep.md"}
        dense = store.search_dense(vector, 1000)
        assert "zep.md" in {c.source for c in store.get([c.key for c in dense])}
        _same_ranking(dense, reference_dense(store, vector, 10_000), 1000)
        gone = {c.key for c in store.search_dense(vector, 1000)} | {
            c.key for c in store.search_sparse("note 0", 1000)
        }
        assert "doc00.md" not in {c.source for c in store.get(sorted(gone))}
        if self.sparse_is_lamina_bm25:
            expected = reference_sparse(store, "note solar", 10_000)
            _same_ranking(store.search_sparse("note solar", 50), expected, 50)

    def test_vectors_come_back_in_the_order_asked(self, store: IndexStore) -> None:
        loaded, chunks, vectors = item("a.md", "one two three four five six seven eight nine")
        store.add("docs", loaded, chunks, vectors)
        keys = all_keys(store)
        got = store.vectors([keys[2], keys[0]])
        assert got.dtype == np.float32 and np.allclose(got, vectors[[2, 0]], atol=1e-6)
        with pytest.raises(KeyError):
            store.vectors([10_000_000])

    def test_a_reading_block_sees_one_version_while_another_handle_writes(
        self, store: IndexStore, open_store: OpenStore
    ) -> None:
        def version(v: int) -> list[Item]:
            return [
                item(f"{name}.md", f"{name} zeppelin version{v} " + "filler words " * 4, words=4)
                for name in ("a", "b")
            ]

        store.add_many("docs", version(0))
        writer = open_store()
        failures: list[BaseException] = []
        done = threading.Event()

        def write() -> None:
            try:
                for v in range(1, 25):
                    writer.add_many("docs", version(v))
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=write)
        thread.start()
        vector = EMBEDDER.embed_query("zeppelin")
        seen: set[str] = set()
        try:
            while not done.is_set() or not seen:
                with store.reading():
                    dense = store.search_dense(vector, 50)
                    sparse = store.search_sparse("zeppelin", 50)
                    chunks = store.get(sorted({c.key for c in dense} | {c.key for c in sparse}))
                assert dense and sparse and len(chunks) == len({c.key for c in dense + sparse})
                versions = {
                    w for c in chunks for w in c.chunk.text.split() if w.startswith("version")
                }
                assert len(versions) <= 1, versions  # never two versions in one search
                seen |= versions
        finally:
            thread.join()
            writer.close()
        assert not failures, failures

    # -- one ingest at a time -----------------------------------------------------------------

    def test_a_second_ingest_lock_fails_fast_naming_the_first(
        self, store: IndexStore, open_store: OpenStore
    ) -> None:
        other = open_store()
        try:
            with store.ingest_lock():
                began = time.monotonic()
                with (
                    pytest.raises(IndexBusyError, match="Another ingest is writing") as caught,
                    other.ingest_lock(),
                ):
                    pass
                assert time.monotonic() - began < 5
                assert caught.value.holder
                with (
                    pytest.raises(IndexBusyError, match=r"after waiting 0\.3 s"),
                    other.ingest_lock(wait_s=0.3),
                ):
                    pass
            with other.ingest_lock():  # released: the next one gets it
                pass
            held = threading.Event()

            def hold_briefly() -> None:
                with store.ingest_lock():
                    held.set()
                    time.sleep(0.5)

            holder = threading.Thread(target=hold_briefly)
            holder.start()
            assert held.wait(10)
            with other.ingest_lock(wait_s=30):  # waits for the holder, then gets it
                assert not holder.is_alive() or time.monotonic() - began > 0.4
            holder.join()
        finally:
            other.close()

    # -- atomicity ------------------------------------------------------------------------------

    @pytest.mark.parametrize("broken", ["metadata", "lengths"])
    def test_a_failing_add_many_leaves_nothing_behind(self, store: IndexStore, broken: str) -> None:
        store.add("docs", *item("keep.md", "kept document"))
        before = (store.generation(), store.count(), all_keys(store))
        good = item("a.md", "good document that would land first")
        replacing = item("keep.md", "this replacement must not land either")
        loaded, chunks, vectors = item("bad.md", "broken document")
        if broken == "metadata":  # fails while writing, after the good items went in
            document = loaded.document.model_copy(update={"metadata": {"x": object()}})
            bad: Sequence[Any] = (loaded.model_copy(update={"document": document}), chunks, vectors)
            error: type[Exception] = TypeError
        else:
            bad = (loaded, chunks, vectors[:-1])
            error = ValueError
        with pytest.raises(error):
            store.add_many("docs", [good, replacing, bad])  # type: ignore[list-item]
        assert (store.generation(), store.count(), all_keys(store)) == before
        assert store.document_text("docs", replacing[0].document.id) == "kept document"
        store.add_many("docs", [good])  # the store is still writable
        assert store.count() == (2, 3)

    def test_data_outlives_the_handle(self, store: IndexStore, open_store: OpenStore) -> None:
        store.add("docs", *item("a.md", "persistent words here"))
        store.set_meta("k", "v")
        store.close()
        again = open_store()
        try:
            assert again.count() == (1, 1) and again.get_meta("k") == "v"
            assert again.generation() == 1
        finally:
            again.close()
