"""The sentence-level reranker: promotes the chunk whose best sentence matches, keeps every hit,
keeps scores ordered, caches sentence vectors, and plugs into Index."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import ConfigError
from lamina.retrieval.documents import Chunk
from lamina.retrieval.index import Index, IndexConfig
from lamina.retrieval.rerank import Reranker, SentenceReranker, get_reranker
from lamina.retrieval.search import Reranker as ReexportedReranker
from lamina.retrieval.store.base import Hit, StoredChunk
from lamina.testing import HashEmbedder
from tests.retrieval.test_index import write_corpus


def hit(key: int, text: str, score: float) -> Hit:
    chunk = Chunk(id=str(key), document_id=str(key), text=text, start=0, end=len(text))
    return Hit(chunk=StoredChunk(key=key, collection="c", chunk=chunk, source="s"), score=score)


HITS = [
    hit(1, "Llamas graze in the Andes. They are kept for wool. Herds are large.", 0.9),
    hit(2, "Many unrelated words here. The vector index answers nearest neighbour queries.", 0.8),
    hit(3, "Nothing relevant at all in this one.", 0.7),
    hit(4, "A tail hit past the depth.", 0.6),
]


def test_the_best_sentence_lifts_its_chunk_and_no_hit_is_lost() -> None:
    reranker = SentenceReranker(HashEmbedder(), weight=0.7, depth=3)
    out = reranker.rerank("vector index nearest neighbour queries", HITS)
    assert [h.chunk.key for h in out][:1] == [2]
    assert sorted(h.chunk.key for h in out) == [1, 2, 3, 4]
    assert out[-1].chunk.key == 4  # past the depth: untouched order, below the reranked
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)
    assert "sentence" in out[0].scores and "sentence" not in out[-1].scores
    assert ReexportedReranker is Reranker


def test_weight_zero_and_tiny_lists_are_left_alone() -> None:
    assert SentenceReranker(HashEmbedder(), weight=0.0).rerank("vector", HITS) == HITS
    assert SentenceReranker(HashEmbedder()).rerank("vector", HITS[:1]) == HITS[:1]
    with pytest.raises(ConfigError, match=r"1\.5"):
        SentenceReranker(HashEmbedder(), weight=1.5)


def test_prepare_caches_sentence_vectors() -> None:
    embedder = HashEmbedder()
    reranker = SentenceReranker(embedder, depth=10)
    assert reranker.prepare([h.chunk for h in HITS], batch=2) == 3 + 2 + 1 + 1
    calls = embedder.calls
    reranker.rerank("llamas", HITS)
    assert embedder.calls == calls  # every candidate was cached
    assert SentenceReranker.sentences(HITS[0].chunk) == [
        "Llamas graze in the Andes.",
        "They are kept for wool.",
        "Herds are large.",
    ]


def test_index_applies_a_reranker(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    index = Index(tmp_path / "idx", embedder=HashEmbedder())
    index.ingest([corpus])
    assert index.searcher.reranker is None  # off by default
    embedder = HashEmbedder()
    given = SentenceReranker(embedder)
    reranked = Index(tmp_path / "idx", embedder=embedder, config=IndexConfig(reranker=given))
    assert reranked.searcher.reranker is given
    hits = reranked.search("vector search", k=5)
    assert len(hits) == 5 and all("sentence" in h.scores for h in hits)
    assert {h.chunk.key for h in hits} <= {h.chunk.key for h in index.search("vector search", k=30)}
    # A spec is built over the index's own embedder: the same ranking as the object.
    by_spec = Index(tmp_path / "idx", embedder=embedder, config=IndexConfig(reranker="sentence"))
    built = by_spec.searcher.reranker
    assert isinstance(built, SentenceReranker) and built.embedder is embedder
    assert [h.chunk.key for h in by_spec.search("vector search", k=5)] == [
        h.chunk.key for h in hits
    ]


def test_reranker_specs_carry_a_weight_and_bad_ones_name_the_fix() -> None:
    config = IndexConfig(reranker="sentence:0.7")
    built = get_reranker(config.reranker, HashEmbedder())
    assert isinstance(built, SentenceReranker) and built.weight == 0.7
    assert get_reranker(None, HashEmbedder()) is None
    for bad in ("cross-encoder", "sentence:1.5", "sentence:heavy", "sentence:nan"):
        with pytest.raises(ConfigError, match=rf"Unknown reranker '{bad}'.*'sentence:WEIGHT'"):
            IndexConfig(reranker=bad)
