"""Our BM25 against bm25s (the reference), and what adding, deleting and merging must keep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lamina.retrieval.derived.bm25 import BM25, MAX_TERM_CHARS, terms
from tests.conftest import require

WORDS = (  # noqa: SIM905
    "protein cell cells gene expression tumour growth insulin receptor signalling mouse "
    "human patients trial dose response brain neurons memory sleep virus infection immune "
    "vaccine the of and in to a is"
).split()


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 40)), p=None)) for _ in range(n)]


QUERIES = ["insulin receptor", "tumour growth in mice", "cells cell CELL", "sleep", "vaccine"]


def test_scores_equal_bm25s_lucene() -> None:
    bm25s = require("bm25s", "the reference BM25: pip install bm25s")
    stemmer = require("Stemmer", "PyStemmer")
    texts = corpus(400)
    ours = BM25.build(texts)
    tokenizer = bm25s.tokenization.Tokenizer(
        stopwords="en", stemmer=stemmer.Stemmer("english").stemWord
    )
    reference = bm25s.BM25()  # method "lucene", k1 1.5, b 0.75
    reference.index(
        tokenizer.tokenize(texts, update_vocab=True, return_as="tuple", show_progress=False),
        show_progress=False,
    )
    for query in QUERIES:
        known = [t for t in terms(query) if t in reference.vocab_dict]
        expected = reference.get_scores(known)
        np.testing.assert_allclose(ours.scores(terms(query)), expected, rtol=1e-5, atol=1e-5)


def test_terms_are_stemmed_stopword_free_and_bounded() -> None:
    assert terms("The Cells are GROWING in the mice's brains") == [
        "cell",
        "grow",
        "mice",
        "brain",
    ]
    assert terms("a I x") == []  # stopwords and one-letter words
    assert terms("x" * (MAX_TERM_CHARS + 1) + " ok") == ["ok"]  # a run of noise is no term


def test_deleting_rows_equals_building_without_them() -> None:
    texts = corpus(300, seed=1)
    index = BM25.build(texts).delete(range(0, 300, 3)).delete([0, 5000, -1])  # repeats, unknown
    kept = [t for i, t in enumerate(texts) if i % 3]
    fresh = BM25.build(kept)
    alive = np.array([i % 3 != 0 for i in range(300)])
    assert (index.live, index.size) == (200, 300)
    for query in QUERIES:
        scores = index.scores(terms(query))
        assert (scores[~alive] == 0).all()
        np.testing.assert_allclose(scores[alive], fresh.scores(terms(query)), rtol=1e-6)


def test_adding_in_pieces_equals_building_at_once_and_merging_changes_nothing() -> None:
    texts = corpus(500, seed=2)
    pieces = BM25.empty()
    for start in range(0, 500, 37):  # new words arrive in later pieces too
        pieces = pieces.add([terms(t) for t in texts[start : start + 37]])
    whole = BM25.build(texts)
    assert len(pieces.segments) == 14 and pieces.size == 500
    merged = pieces.delete([3, 4]).merged()
    assert len(merged.segments) == 1
    for query in QUERIES:
        np.testing.assert_allclose(pieces.scores(terms(query)), whole.scores(terms(query)))
        np.testing.assert_allclose(
            merged.scores(terms(query)), pieces.delete([3, 4]).scores(terms(query))
        )


def test_a_mask_narrows_results_not_statistics() -> None:
    texts = corpus(100, seed=3)
    index = BM25.build(texts)
    mask = np.zeros(100, dtype=bool)
    mask[:10] = True
    full = index.scores(terms("insulin receptor"))
    masked = index.scores(terms("insulin receptor"), mask)
    np.testing.assert_array_equal(masked[:10], full[:10])
    assert (masked[10:] == 0).all()


def test_a_repeated_query_term_counts_again() -> None:
    index = BM25.build(["insulin receptor", "insulin", "receptor"])
    once = index.scores(terms("insulin receptor"))
    twice = index.scores(terms("insulin insulin receptor"))
    np.testing.assert_allclose(twice - once, index.scores(["insulin"]))


def test_empty_indexes_and_unknown_terms_score_zero() -> None:
    assert BM25.empty().scores(["cell"]).shape == (0,)
    index = BM25.build(["cell growth"])
    assert index.scores(["zebra"]).tolist() == [0.0]
    assert index.delete([0]).scores(["cell"]).tolist() == [0.0]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    texts = corpus(200, seed=4)
    index = BM25.build(texts[:150]).add([terms(t) for t in texts[150:]]).delete([7, 8])
    index.save(tmp_path / "bm25")
    loaded = BM25.load(tmp_path / "bm25")
    assert (loaded.live, loaded.size, len(loaded.segments)) == (198, 200, 1)
    assert loaded.total_length == pytest.approx(index.total_length)
    for query in QUERIES:
        np.testing.assert_allclose(loaded.scores(terms(query)), index.scores(terms(query)))
    grown = loaded.add([terms("insulin receptor brand new words")])  # still growable
    assert grown.scores(terms("brand new"))[-1] > 0
