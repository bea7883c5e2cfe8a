"""The feedback store (lamina.feedback): runs, ratings, the latest rating wins."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lamina.errors import ConfigError, InvalidRequestError
from lamina.feedback import FeedbackStore, feedback_path


def test_records_rates_and_reads_back(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    first = store.record(
        "ask",
        "Capital of Velmora?",
        "Ostrell [1].",
        model="local:SmolLM2",
        citations=[{"n": 1, "source": "velmora.md", "start": 0, "end": 10, "quote": "Ostrell"}],
        meta={"strategy": "extract", "found": True},
    )
    second = store.record(
        "agent", "Plan a trip", "Go.", messages=[{"role": "user", "content": "Plan a trip"}]
    )
    assert first.startswith("run-") and len(first) == 16 and first != second
    run = FeedbackStore(tmp_path / "fb.sqlite").get(first)  # a new instance: it persisted
    assert (run.kind, run.model, run.citations[0]["source"]) == (
        "ask",
        "local:SmolLM2",
        "velmora.md",
    )
    assert run.meta == {"strategy": "extract", "found": True} and run.messages is None

    assert store.rated() == []
    store.rate(first, "up")
    store.rate(first, "down", fix="Ostrell is the capital.")  # the later rating replaces it
    store.rate(second, "up")
    rated = store.rated()
    assert [(r.id, g.rating, g.fix) for r, g in rated] == [
        (first, "down", "Ostrell is the capital."),
        (second, "up", None),
    ]
    assert [r.id for r, _ in store.rated(["agent"])] == [second]
    assert store.rated()[1][0].messages == [{"role": "user", "content": "Plan a trip"}]


def test_bad_ratings_are_refused_with_the_fix(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    run_id = store.record("ask", "Q?", "A.")
    with pytest.raises(InvalidRequestError, match=r"No run 'run-000000000000' in .*lamina ask"):
        store.rate("run-000000000000", "up")
    with pytest.raises(InvalidRequestError, match="'up' or 'down', not 'meh'"):
        store.rate(run_id, "meh")
    with pytest.raises(InvalidRequestError, match="--fix goes with 'down'"):
        store.rate(run_id, "up", fix="Better.")
    with pytest.raises(InvalidRequestError, match="--fix is empty"):
        store.rate(run_id, "down", fix="  ")
    assert store.rated() == []  # nothing half-written


def test_a_store_from_a_newer_lamina_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fb.sqlite"
    FeedbackStore(path).record("ask", "Q?", "A.")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="newer Lamina"):
        FeedbackStore(path).rated()


def test_the_default_store_lives_in_lamina_home(tmp_path: Path) -> None:
    assert feedback_path() == tmp_path / "lamina-home" / "feedback.sqlite"
    assert FeedbackStore().path == feedback_path()
