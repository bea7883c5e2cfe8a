"""Store, ingest and search through the Index facade, with a deterministic test embedder."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from lamina.errors import ConfigError, InvalidRequestError
from lamina.retrieval.index import Index, IndexConfig
from lamina.retrieval.ingest import Ingestor
from lamina.retrieval.store.sqlite import DB_NAME, MIGRATIONS, SQLiteStore
from lamina.testing import HashEmbedder

ROOT = Path(__file__).resolve().parents[2]


def write_corpus(folder: Path, n: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    topics = ["llama inference", "vector search", "prompt templates", "agent tools", "fine tuning"]
    for i in range(n):
        topic = topics[i % len(topics)]
        (folder / f"doc{i:03d}.md").write_text(
            f"# Note {i} on {topic}\n\n"
            f"This note number {i} explains {topic} in detail. It has a second sentence.\n\n"
            f"## Details\n\nMore about {topic}: item {i} of the corpus, written for tests.\n"
        )
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


def open_index(path: Path) -> Index:
    return Index(path, embedder=HashEmbedder())


def test_ingest_then_search_every_mode(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    summary = index.ingest([corpus])
    assert (summary.files, summary.added, summary.skipped) == (40, 40, [])
    assert index.count() == (40, summary.chunks)
    for mode in ("hybrid", "dense", "bm25"):
        hits = index.search("vector search", k=5, mode=mode)  # type: ignore[arg-type]
        assert len(hits) == 5
        assert all("vector search" in h.chunk.title.lower() for h in hits)  # type: ignore[union-attr]
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    hit = index.search("vector search", k=1)[0]
    assert set(hit.scores) == {"dense", "bm25"}
    document = index.store.document_text(hit.chunk.collection, hit.chunk.chunk.document_id)
    assert document is not None
    assert document[hit.chunk.chunk.start : hit.chunk.chunk.end] == hit.text


def test_incremental_reingest_skips_updates_and_removes(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    first = index.ingest([corpus])
    again = index.ingest([corpus])
    assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 40, 0)
    (corpus / "doc000.md").write_text("# Changed\n\nEntirely new text about quantum kittens.\n")
    (corpus / "doc001.md").unlink()
    (corpus / "new.txt").write_text("A brand new plain text note about kittens.")
    third = index.ingest([corpus])
    assert (third.added, third.updated, third.removed, third.unchanged) == (1, 1, 1, 38)
    assert index.count()[0] == 40
    hits = index.search("quantum kittens", k=1, mode="bm25")
    assert hits[0].chunk.source.endswith("doc000.md")
    assert first.chunks >= 40


def test_bad_files_are_reported_and_skipped(tmp_path: Path, corpus: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (corpus / "binary.txt").write_bytes(b"abc\x00def")
    (corpus / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (corpus / "empty.md").write_text("")
    summary = open_index(tmp_path / "idx").ingest([corpus])
    assert summary.added == 40
    reasons = {Path(s.source).name: s.reason for s in summary.skipped}
    assert set(reasons) == {"broken.pdf", "binary.txt", "latin1.txt", "empty.md"}
    assert "binary" in reasons["binary.txt"] and "not valid utf-8" in reasons["latin1.txt"]


def test_include_exclude_collections_and_filters(tmp_path: Path, corpus: Path) -> None:
    index = open_index(tmp_path / "idx")
    index.ingest([corpus], collection="even", include=["doc0[0-9][02468].md"])
    index.ingest([corpus], collection="rest", exclude=["doc0[0-9][02468].md"])
    assert index.collections() == ["even", "rest"]
    assert index.count("even") == (20, index.count("even")[1])
    hits = index.search("note", k=50, collection="even")
    assert hits and {h.chunk.collection for h in hits} == {"even"}
    only = index.search("note", k=50, filters={"source": str((corpus / "doc004.md").resolve())})
    assert {h.chunk.source for h in only} == {str((corpus / "doc004.md").resolve())}
    assert index.search("note", k=5, filters={"format": "pdf"}) == []


def test_mmr_diversifies(tmp_path: Path) -> None:
    folder = tmp_path / "dups"
    folder.mkdir()
    for i in range(3):
        (folder / f"same{i}.txt").write_text("Solar panels convert sunlight into electricity.")
    (folder / "other.txt").write_text("Solar farms need land.")
    index = open_index(tmp_path / "idx")
    index.ingest([folder])
    plain = index.search("solar sunlight electricity", k=2)
    diverse = index.search("solar sunlight electricity", k=2, mmr_lambda=0.3)
    assert {Path(h.chunk.source).name for h in plain} <= {"same0.txt", "same1.txt", "same2.txt"}
    assert "other.txt" in {Path(h.chunk.source).name for h in diverse}


def test_derived_indexes_are_rebuildable_and_follow_other_writers(
    tmp_path: Path, corpus: Path
) -> None:
    reader = open_index(tmp_path / "idx")
    writer = open_index(tmp_path / "idx")
    writer.ingest([corpus])
    assert len(reader.search("fine tuning", k=3)) == 3
    (corpus / "extra.txt").write_text("Zeppelins float on hydrogen.")
    writer.ingest([corpus])
    assert reader.search("zeppelins", k=1, mode="bm25")[0].chunk.source.endswith("extra.txt")
    for path in (tmp_path / "idx" / "derived").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")  # a damaged cache is rebuilt, not trusted
    fresh = open_index(tmp_path / "idx")
    assert fresh.search("zeppelins", k=1, mode="bm25")[0].chunk.source.endswith("extra.txt")


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No Lamina index"):
        Index(tmp_path / "missing", embedder=HashEmbedder(), create=False)
    index = open_index(tmp_path / "idx")
    with pytest.raises(InvalidRequestError, match="no such file"):
        index.ingest([tmp_path / "nothing-here"])
    with pytest.raises(InvalidRequestError, match="mode"):
        index.search("x", mode="fuzzy")  # type: ignore[arg-type]
    other = HashEmbedder(dimension=32)  # another model: "hash:32"
    index.ingest([write_corpus(tmp_path / "c", 2)])
    with pytest.raises(ConfigError, match="built with the embedder 'hash', not 'hash:32'"):
        Index(tmp_path / "idx", embedder=other).ingest([tmp_path / "c"])


def test_the_config_reaches_the_searcher_and_serialises(tmp_path: Path) -> None:
    config = IndexConfig(fusion="rrf", alpha=0.3, reranker="sentence:0.4", chunk_tokens=64)
    assert IndexConfig.model_validate_json(config.model_dump_json()) == config
    with Index(tmp_path / "idx", embedder=HashEmbedder(), config=config) as index:
        searcher = index.searcher
        assert (searcher.fusion, searcher.alpha) == ("rrf", 0.3)
        assert getattr(searcher.reranker, "weight", None) == 0.4
        assert (index.chunker.max_tokens, index.chunker.overlap) == (64, 16)
    defaults = IndexConfig()
    assert (defaults.chunk_tokens, defaults.chunk_overlap, defaults.reranker) == (128, 16, None)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"chunk_overlap": 128}, "chunk_overlap \\(128\\) must be below chunk_tokens"),
        ({"chunk_tokens": 0}, "chunk_tokens"),
        ({"alpha": 1.5}, "alpha"),
        ({"fusion": "max"}, "fusion"),
        ({"chunk_size": 100}, "chunk_size"),
    ],
)
def test_a_bad_config_names_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        IndexConfig.model_validate(fields)


def test_migrations_are_ordered_and_recorded(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "idx").close()
    db = sqlite3.connect(tmp_path / "idx" / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="newer than this Lamina"):
        SQLiteStore(tmp_path / "idx")


def consistent(index_dir: Path) -> tuple[set[str], int]:
    """Open the store, check its invariants; return the chunk ids and document count."""
    db = sqlite3.connect(index_dir / DB_NAME)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    orphans = db.execute(
        "SELECT count(*) FROM chunks c LEFT JOIN documents d "
        "ON d.collection = c.collection AND d.id = c.document_id WHERE d.id IS NULL"
    ).fetchone()[0]
    empty = db.execute(
        "SELECT count(*) FROM documents d WHERE NOT EXISTS "
        "(SELECT 1 FROM chunks c WHERE c.collection = d.collection AND c.document_id = d.id)"
    ).fetchone()[0]
    ids = [r[0] for r in db.execute("SELECT id FROM chunks")]
    (docs,) = db.execute("SELECT count(*) FROM documents").fetchone()
    db.close()
    assert orphans == 0 and empty == 0
    assert len(ids) == len(set(ids)), "duplicated chunks"
    return set(ids), docs


@pytest.mark.integration
def test_sigkill_mid_ingest_leaves_a_consistent_resumable_store(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", n=60)
    reference = open_index(tmp_path / "reference")
    reference.ingest([corpus])
    expected, expected_docs = consistent(tmp_path / "reference")

    index_dir = tmp_path / "killed"
    for batches_before_kill, extra_delay in ((0, 0.05), (1, 0.0), (3, 0.1), (5, 0.02)):
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.retrieval.ingest_worker",
                str(index_dir),
                str(corpus),
                "0.15",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None
        assert worker.stdout.readline().startswith("ready")
        for _ in range(batches_before_kill):
            line = worker.stdout.readline()
            if line.startswith("finished"):
                break
        time.sleep(extra_delay)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        ids, docs = consistent(index_dir)  # opens and holds its invariants after every kill
        assert ids <= expected
        runs = SQLiteStore(index_dir).runs()
        assert runs[-1]["status"] in ("running", "done")
    resumed = open_index(index_dir).ingest([corpus])
    assert resumed.skipped == []
    ids, docs = consistent(index_dir)
    assert (ids, docs) == (expected, expected_docs)
    statuses = [r["status"] for r in SQLiteStore(index_dir).runs()]
    assert "interrupted" in statuses and statuses[-1] == "done"
    assert json.dumps(resumed.as_dict())


# --- issue 9: one bad record, duplicates, empty indexes, rebuilds per burst -------------------


def _jsonl(path: Path, records: list[str]) -> Path:
    path.write_text("\n".join(records) + "\n", encoding="utf-8")
    return path


def _record(i: int, text: str | None = None) -> str:
    body = text if text is not None else f"Record {i} is about topic {i % 7} and nothing else."
    return json.dumps({"_id": f"r{i}", "title": f"Title {i}", "text": body})


def test_a_lone_surrogate_record_is_normalised_and_the_rest_ingests(tmp_path: Path) -> None:
    records = [_record(i) for i in range(150)]
    records[100] = '{"_id": "r100", "title": "Bad", "text": "half a pair: \\ud800 here"}'
    corpus = _jsonl(tmp_path / "corpus.jsonl", records)
    index = open_index(tmp_path / "idx")
    summary = index.ingest([corpus])
    assert (summary.added, summary.skipped) == (150, [])
    hit = index.search("half a pair", k=1, mode="bm25")[0]
    assert hit.chunk.source.endswith("#r100") and "\ufffd" in hit.text
    again = index.ingest([corpus])  # not stuck: everything is there
    assert (again.added, again.unchanged, again.skipped) == (0, 150, [])


class ChokingEmbedder(HashEmbedder):
    """Fails like a tokenizer on one input, as third-party code does on what it cannot take."""

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if any("POISON" in t for t in texts):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]")
        return super().embed_documents(texts)


def test_a_record_the_embedder_chokes_on_is_reported_with_file_and_line(tmp_path: Path) -> None:
    records = [_record(i) for i in range(150)]
    records[99] = _record(99, "This one holds POISON for the embedder.")
    corpus = _jsonl(tmp_path / "corpus.jsonl", records)
    index = Index(tmp_path / "idx", embedder=ChokingEmbedder())
    summary = index.ingest([corpus])
    assert summary.added == 149
    (skipped,) = summary.skipped
    assert skipped.source == f"{corpus.resolve()}:100"
    assert "TypeError" in skipped.reason and "the rest was ingested" in skipped.reason
    assert index.count() == (149, summary.chunks)
    again = index.ingest([corpus])  # the file is done: a rerun is not stuck on the record
    assert (again.added, again.unchanged) == (0, 149)


def test_a_failing_embedder_stops_the_ingest_instead_of_skipping_everything(
    tmp_path: Path, corpus: Path
) -> None:
    from lamina.errors import ProviderError

    class Down(HashEmbedder):
        def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            raise ProviderError("the embedding server is down")

    with pytest.raises(ProviderError, match="down"):
        Index(tmp_path / "idx", embedder=Down()).ingest([corpus])


def test_duplicate_ids_are_reported_not_silently_replaced(tmp_path: Path) -> None:
    records = [_record(1), _record(2), _record(3), _record(2, "A second record with id r2.")]
    corpus = _jsonl(tmp_path / "corpus.jsonl", records)
    index = open_index(tmp_path / "idx")
    summary = index.ingest([corpus])
    assert summary.added == 3 and index.count()[0] == 3
    (skipped,) = summary.skipped
    assert skipped.source.endswith("corpus.jsonl:4")
    assert "duplicate _id 'r2'" in skipped.reason and "line 2" in skipped.reason
    assert all("second record" not in h.text for h in index.search("record", k=5, mode="bm25"))


def test_searching_an_empty_or_unfinished_index_says_so(tmp_path: Path, corpus: Path) -> None:
    from typer.testing import CliRunner

    from lamina.cli import app

    index = open_index(tmp_path / "idx")
    index.ingest([corpus], include=["*.none"])  # nothing matches: an empty index
    with pytest.raises(InvalidRequestError, match="holds no documents"):
        index.check_searchable()
    run = index.store.begin_run()  # an ingest that died: its run never ended
    assert index.unfinished() is not None and "still running" in str(index.unfinished())
    index.store.end_run(run, {}, "failed")
    index.close()
    result = CliRunner().invoke(app, ["search", "anything", "--index", str(tmp_path / "idx")])
    assert result.exit_code == 1
    assert "holds no documents" in result.output and "failed" in result.output


def test_an_unfinished_ingest_is_a_warning_on_search(tmp_path: Path, corpus: Path) -> None:
    from typer.testing import CliRunner

    from lamina.cli import app

    Index(tmp_path / "idx").ingest([corpus])  # the bundled MiniLM, as the CLI uses it
    with Index(tmp_path / "idx") as index:
        index.store.begin_run()  # a second ingest, killed
    result = CliRunner().invoke(app, ["search", "vector search", "--index", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    assert "may be incomplete" in result.output and "vector search" in result.output


def test_a_reader_follows_an_ingest_batch_by_batch_without_rebuilding(
    tmp_path: Path, corpus: Path
) -> None:
    reader = open_index(tmp_path / "idx")
    reader.ingest([write_corpus(tmp_path / "first", 5)])
    assert reader.search("vector search", k=1)
    local = reader.store.local  # type: ignore[attr-defined]
    writer = open_index(tmp_path / "idx")
    store_add = writer.store.add_many
    seen: list[int] = []

    def add_and_search(*args: object, **kwargs: object) -> None:
        store_add(*args, **kwargs)  # type: ignore[arg-type]
        # A query after every committed batch sees that batch, in one view of the store.
        hits = reader.search("note item", k=100, mode="bm25")
        seen.append(len({h.chunk.source for h in hits}))

    writer.store.add_many = add_and_search  # type: ignore[method-assign]
    Ingestor(writer.store, writer.embedder, writer.chunker, batch=5).ingest([corpus])
    assert seen == [5 + 5 * n for n in range(1, 9)]  # 8 batches of 5 notes, each seen at once
    assert local.builds == 1  # the first search built; every batch after was applied
    hits = reader.search("fine tuning item 39", k=3)
    assert any("39" in h.text for h in hits)


def test_two_ingests_into_one_index_never_run_together(tmp_path: Path, corpus: Path) -> None:
    from lamina.retrieval.errors import IndexBusyError
    from lamina.settings import Settings

    first = Index(tmp_path / "idx", embedder=HashEmbedder(delay=0.05))
    second = Index(tmp_path / "idx", embedder=HashEmbedder())
    started = threading.Event()
    original = first.store.begin_run

    def begin() -> int:
        started.set()
        return original()

    first.store.begin_run = begin  # type: ignore[method-assign]
    worker = threading.Thread(target=lambda: first.ingest([corpus]))
    worker.start()
    assert started.wait(10)
    with pytest.raises(IndexBusyError, match=r"Another ingest is writing to the index .*process"):
        second.ingest([write_corpus(tmp_path / "other", 3)])
    worker.join()
    assert [r["status"] for r in second.store.runs()] == ["done"]  # the second wrote nothing
    waiting = Index(
        tmp_path / "idx",
        embedder=HashEmbedder(),
        settings=Settings(retrieval={"ingest_wait_s": 30}),  # type: ignore[arg-type]
    )
    worker = threading.Thread(target=lambda: first.ingest([corpus, tmp_path / "other"]))
    started.clear()
    worker.start()
    assert started.wait(10)
    summary = waiting.ingest([corpus])  # waits for the first, then finds it all done
    worker.join()
    assert summary.unchanged == 40 and summary.added == 0
    assert [r["status"] for r in waiting.store.runs()] == ["done", "done", "done"]
    assert consistent(tmp_path / "idx")[1] == 43


@pytest.mark.integration
def test_a_killed_ingest_releases_the_index(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", n=60)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.retrieval.ingest_worker",
            str(tmp_path / "idx"),
            str(corpus),
            "0.3",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().startswith("ready")
    assert worker.stdout.readline().startswith("committed")
    from lamina.retrieval.errors import IndexBusyError

    with pytest.raises(IndexBusyError, match=f"process {worker.pid} on"):
        open_index(tmp_path / "idx").ingest([corpus])
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    resumed = open_index(tmp_path / "idx").ingest([corpus])  # the lock died with its holder
    assert resumed.skipped == [] and consistent(tmp_path / "idx")[1] == 60
