from __future__ import annotations

from lamina.rag.citations import best_span, parse_claims, strip_markers
from lamina.rag.context import Passage
from lamina.retrieval.index import Index


def test_parse_claims_attaches_markers_to_their_sentence() -> None:
    claims = parse_claims("GGUF replaced GGML [2]. It stores metadata. [1, 3] No citation here.")
    assert [(c.sentence, c.numbers) for c in claims] == [
        ("GGUF replaced GGML.", [2]),
        ("It stores metadata.", [1, 3]),
        ("No citation here.", []),
    ]


def test_strip_markers() -> None:
    assert strip_markers("A [1][2], B [3].") == "A, B."


def test_best_span_maps_to_exact_document_offsets(index: Index) -> None:
    hit = index.search("older GGML format", k=1)[0]
    span = best_span("GGUF replaced the older GGML format.", Passage(1, hit))
    chunk = hit.chunk
    text = index.store.document_text(chunk.collection, chunk.chunk.document_id)
    assert text is not None
    assert text[span.start : span.end] == span.text
    assert "replaced the older GGML format" in " ".join(span.text.split())
    assert span.overlap > 0.5
