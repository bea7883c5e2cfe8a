"""Semantic routing: choosing collections by description and examples, the confidence
threshold and fallback, and Index.search(collection="auto")."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import ConfigError, InvalidRequestError
from lamina.retrieval.index import Index
from lamina.retrieval.router import Route, SemanticRouter
from lamina.testing import HashEmbedder

ROUTES = {
    "billing": Route(
        "invoices payments refunds and subscription charges",
        ("why was my card charged twice", "how do I get a refund"),
    ),
    "engineering": Route(
        "installation errors crashes and configuration of the server",
        ("the server crashes on startup", "install fails with a compiler error"),
    ),
}


def test_routes_to_the_most_similar_collection() -> None:
    router = SemanticRouter(ROUTES, HashEmbedder(), threshold=0.3)
    names, confidence = router.route("my card was charged twice for one invoice")
    assert names == ["billing"]
    assert confidence >= 0.3
    assert router.route("server crashes after install")[0] == ["engineering"]
    scores = router.scores("refund")
    assert list(scores) == ["billing", "engineering"]  # best first
    assert scores["billing"] > scores["engineering"]


def test_an_example_query_is_matched_exactly() -> None:
    router = SemanticRouter(ROUTES, HashEmbedder(), threshold=0.9)
    names, confidence = router.route("how do I get a refund")
    assert names == ["billing"] and confidence == pytest.approx(1.0, abs=1e-5)


def test_low_confidence_falls_back_to_every_collection() -> None:
    router = SemanticRouter(ROUTES, HashEmbedder(), threshold=0.3)
    names, confidence = router.route("banana bread recipe")
    assert names == ["billing", "engineering"]
    assert confidence < 0.3


def test_near_ties_return_both() -> None:
    router = SemanticRouter({"a": "alpha beta", "b": "alpha gamma"}, HashEmbedder(), margin=0.05)
    assert sorted(router.route("alpha")[0]) == ["a", "b"]
    assert SemanticRouter({"a": "alpha beta"}, HashEmbedder()).route("alpha")[0] == ["a"]


def test_bad_routes_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least one route"):
        SemanticRouter({}, HashEmbedder())
    with pytest.raises(ConfigError, match=r"\['empty'\]"):
        SemanticRouter({"empty": Route("  ")}, HashEmbedder())


def _index(tmp_path: Path) -> Index:
    index = Index(tmp_path / "idx", embedder=HashEmbedder())
    for name, text in {
        "billing": "Refunds are issued within five days. Invoices are sent monthly by email.",
        "engineering": "If the server crashes on startup, check the configuration file.",
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "note.md").write_text(f"# {name}\n\n{text}\n")
        index.ingest([folder], collection=name)
    return index


def test_index_search_auto_routes_by_stored_descriptions(tmp_path: Path) -> None:
    index = _index(tmp_path)
    for name, route in ROUTES.items():
        index.describe_collection(name, route.description, route.examples)
    index.config.router_threshold = 0.3
    assert index.route("how do I get a refund for an invoice")[0] == ["billing"]
    hits = index.search("how do I get a refund for an invoice", collection="auto")
    assert hits and {h.chunk.collection for h in hits} == {"billing"}
    hits = index.search("banana bread recipe", collection="auto", mode="dense")
    assert {h.chunk.collection for h in hits} == {"billing", "engineering"}  # fell back to all

    router = index.router()
    assert index.router() is router  # cached while nothing changes
    index.describe_collection("billing", "payments only")
    assert index.router() is not router
    assert index.router().routes["billing"] == Route("payments only")


def test_undescribed_collections_route_by_name_and_empty_index_refuses(tmp_path: Path) -> None:
    index = _index(tmp_path)
    assert index.router().routes["engineering"] == Route("engineering")
    empty = Index(tmp_path / "empty", embedder=HashEmbedder())
    assert empty.search("anything", collection="auto") == []
    with pytest.raises(InvalidRequestError, match="ingest first"):
        empty.route("anything")


@pytest.mark.integration
def test_minilm_routes_paraphrases(tmp_path: Path) -> None:
    from lamina.models.embeddings import get_embedder

    router = SemanticRouter(
        {
            "hr": Route("human resources: leave, holidays, payroll, pensions and benefits"),
            "it": Route("IT support: laptops, passwords, VPN, email and printers"),
            "legal": Route("contracts, NDAs, compliance and intellectual property"),
        },
        get_embedder("minilm"),
    )
    assert router.route("How many vacation days do I get per year?")[0] == ["hr"]
    assert router.route("I forgot my login password")[0] == ["it"]
    assert router.route("Can we sign a non-disclosure agreement with the vendor?")[0] == ["legal"]
    names, confidence = router.route("What's the best recipe for banana bread?")
    assert names == ["hr", "it", "legal"] and confidence < router.threshold
