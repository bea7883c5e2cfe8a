"""Chunking: exact offsets, headings, pages, sentence boundaries, overlap and token limits."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.errors import ConfigError, InvalidRequestError, ModelNotFoundError
from lamina.models.embeddings import Vectors, get_embedder
from lamina.retrieval import (
    Block,
    Chunk,
    Chunker,
    Document,
    HFTokenCounter,
    LoadedDocument,
    chunk_document,
    load,
    split_sentences,
)
from lamina.retrieval.index import Index, IndexConfig
from lamina.retrieval.tokens import EmbedderCounter, minilm_counter, minilm_tokenizer_path
from lamina.testing import HashEmbedder
from tests.conftest import unavailable
from tests.retrieval.files import make_docx, make_pdf


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def minilm() -> HFTokenCounter:
    try:
        minilm_tokenizer_path()
    except ModelNotFoundError as error:
        unavailable("the bundled all-MiniLM-L6-v2", str(error))
    return minilm_counter()


def assert_exact(loaded: LoadedDocument, chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert loaded.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.document_id == loaded.document.id
    assert len({c.id for c in chunks}) == len(chunks)


def sentence_edges(loaded: LoadedDocument) -> tuple[set[int], set[int]]:
    starts: set[int] = set()
    ends: set[int] = set()
    for block in loaded.blocks:
        spans = split_sentences(loaded.text, block.start, block.end)
        if block.kind != "paragraph":
            spans = [(block.start, block.end)]
        starts.update(s for s, _ in spans)
        ends.update(e for _, e in spans)
    return starts, ends


def sentences(n: int, prefix: str = "Sentence") -> str:
    return " ".join(f"{prefix} {i} has exactly six words." for i in range(n))


def markdown_doc(tmp_path: Path, text: str) -> LoadedDocument:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return load(path)


def test_heading_paths_and_exact_offsets(tmp_path: Path) -> None:
    text = (
        "# Guide\n\nWelcome. Read on.\n\n## Install\n\nUse pip.\n\n### From source\n\n"
        "Clone it. Build it.\n\n## Usage\n\nRun it.\n"
    )
    loaded = markdown_doc(tmp_path, text)
    chunks = chunk_document(loaded, max_tokens=50, overlap=5, counter=words)
    assert [(c.heading_path, c.text) for c in chunks] == [
        (["Guide"], "Welcome. Read on."),
        (["Guide", "Install"], "Use pip."),
        (["Guide", "Install", "From source"], "Clone it. Build it."),
        (["Guide", "Usage"], "Run it."),
    ]
    assert_exact(loaded, chunks)
    assert chunks[0].contextual_text("Doc") == "Doc > Guide\nWelcome. Read on."


def test_sentences_are_never_cut_and_overlap_is_whole_sentences(tmp_path: Path) -> None:
    loaded = markdown_doc(tmp_path, f"# Long\n\n{sentences(40)}\n")
    chunks = chunk_document(loaded, max_tokens=30, overlap=6, counter=words)
    starts, ends = sentence_edges(loaded)
    assert len(chunks) > 5
    for chunk in chunks:
        assert words(chunk.text) <= 30
        assert chunk.start in starts and chunk.end in ends
    for previous, following in pairwise(chunks):
        shared = loaded.text[following.start : previous.end]
        assert following.start < previous.end, "consecutive chunks should overlap"
        assert words(shared) == 6  # exactly one six-word sentence
        assert following.start in starts
    covered = {i for c in chunks for i in range(c.start, c.end)}
    body = loaded.blocks[1]
    assert all(i in covered for i in range(body.start, body.end))


def test_no_overlap_across_sections_or_when_disabled(tmp_path: Path) -> None:
    text = f"# A\n\n{sentences(8)}\n\n# B\n\n{sentences(8)}\n"
    loaded = markdown_doc(tmp_path, text)
    chunks = chunk_document(loaded, max_tokens=20, overlap=0, counter=words)
    for previous, following in pairwise(chunks):
        assert following.start > previous.end
    with_overlap = chunk_document(loaded, max_tokens=20, overlap=8, counter=words)
    boundary = next(i for i, c in enumerate(with_overlap) if c.heading_path == ["B"])
    assert with_overlap[boundary].start > with_overlap[boundary - 1].end


def test_whole_paragraphs_move_to_a_fresh_chunk(tmp_path: Path) -> None:
    paragraphs = [sentences(2, f"P{i}") for i in range(4)]  # 12 words each
    loaded = markdown_doc(tmp_path, "\n\n".join(paragraphs) + "\n")
    chunks = chunk_document(loaded, max_tokens=30, overlap=0, counter=words)
    assert [c.text for c in chunks] == [
        f"{paragraphs[0]}\n\n{paragraphs[1]}",
        f"{paragraphs[2]}\n\n{paragraphs[3]}",
    ]


def test_an_over_long_sentence_is_split_by_tokens(tmp_path: Path) -> None:
    long_sentence = " ".join(f"w{i}" for i in range(95)) + "."
    loaded = markdown_doc(tmp_path, f"Short one. {long_sentence} Short two.\n")
    chunks = chunk_document(loaded, max_tokens=40, overlap=5, counter=words)
    assert_exact(loaded, chunks)
    assert all(words(c.text) <= 40 for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert all(f"w{i} " in joined or f"w{i}." in joined for i in range(95))


def test_a_giant_word_is_split_by_characters() -> None:
    blob = "x" * 5000
    loaded = LoadedDocument(
        document=Document.for_source("blob.txt", content_hash="0" * 64),
        text=blob,
        blocks=[Block(kind="paragraph", text=blob, start=0, end=5000)],
    )
    chunks = chunk_document(loaded, max_tokens=100, overlap=0, counter=len)
    assert all(len(c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == blob
    assert_exact(loaded, chunks)


def test_code_blocks_split_by_lines(tmp_path: Path) -> None:
    code = "\n".join(f"echo step {i} of the build" for i in range(30))
    loaded = markdown_doc(tmp_path, f"# Build\n\n```sh\n{code}\n```\n")
    chunks = chunk_document(loaded, max_tokens=40, overlap=0, counter=words)
    assert len(chunks) > 2
    for chunk in chunks:
        assert words(chunk.text) <= 40
        assert loaded.text[chunk.end] == "\n"  # ends at a line end
    assert_exact(loaded, chunks)


def test_heading_without_body_becomes_its_own_chunk(tmp_path: Path) -> None:
    loaded = markdown_doc(tmp_path, "# Top\n\n## Empty\n\n## Full\n\nBody.\n\n# Tail\n")
    chunks = chunk_document(loaded, max_tokens=50, overlap=0, counter=words)
    assert [(c.heading_path, c.text) for c in chunks] == [
        (["Top", "Empty"], "Empty"),
        (["Top", "Full"], "Body."),
        (["Tail"], "Tail"),
    ]


def test_pdf_chunks_keep_pages_and_never_straddle_them(tmp_path: Path) -> None:
    page = [f"Line {i} of this page is a sentence." for i in range(12)]
    loaded = load(make_pdf(tmp_path / "doc.pdf", [page, page, page]))
    chunks = chunk_document(loaded, max_tokens=40, overlap=8, counter=words)
    assert {c.page for c in chunks} == {1, 2, 3}
    for chunk in chunks:
        block = next(b for b in loaded.blocks if b.start <= chunk.start < b.end)
        assert block.page == chunk.page and chunk.end <= block.end
    assert_exact(loaded, chunks)


def test_real_tokenizer_limits_on_every_format(tmp_path: Path, minilm: HFTokenCounter) -> None:
    prose = " ".join(
        f"The {i}th retrieval experiment measured recall@10 on BEIR-style corpora, "
        f"and it reported nDCG of 0.{i:02d} (see Table {i})."
        for i in range(60)
    )
    md = markdown_doc(tmp_path, f"# Results\n\n## Recall\n\n{prose}\n\n## Notes\n\nDone.\n")
    pdf = load(make_pdf(tmp_path / "r.pdf", [[prose[:900]], [prose[900:1800]]]))
    docx = load(make_docx(tmp_path / "g.docx"))
    html_path = tmp_path / "p.html"
    html_path.write_text(f"<h1>Results</h1><p>{prose}</p><h2>More</h2><p>{prose}</p>")
    html = load(html_path)
    chunker = Chunker(max_tokens=96, overlap=40)  # a sentence here is about 30 tokens
    for loaded, chunks in zip(
        [md, pdf, docx, html], chunker.chunk_many([md, pdf, docx, html]), strict=True
    ):
        assert chunks == chunker.chunk(loaded)
        assert_exact(loaded, chunks)
        counts = minilm.count_batch([c.text for c in chunks])
        assert max(counts) <= 96
        starts, ends = sentence_edges(loaded)
        assert all(c.start in starts and c.end in ends for c in chunks)
    md_chunks = chunker.chunk(md)
    assert md_chunks[0].heading_path == ["Results", "Recall"]
    assert md_chunks[-1].heading_path == ["Results", "Notes"]
    recall = [c for c in md_chunks if c.heading_path == ["Results", "Recall"]]
    assert all(b.start < a.end for a, b in pairwise(recall))


def test_minilm_counter_ignores_truncation_and_special_tokens(minilm: HFTokenCounter) -> None:
    long_text = "word " * 600
    assert minilm.count_batch([long_text, "Hello world.", ""]) == [600, 3, 0]


def test_default_counter_is_minilm(minilm: HFTokenCounter) -> None:
    assert Chunker().counter is minilm


# --- an index chunks in its embedder's tokens ------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "corpus"
#: MiniLM cuts these into several WordPieces each; the hash embedder reads one token per word.
DENSE_PROSE = (
    "# Notes\n\n"
    + " ".join(
        f"State-of-the-art {n}-bit quantisation (GPTQ/AWQ, e.g. Q4_K_M) cut VRAM by ~{n}0%."
        for n in range(2, 9)
    )
    + "\n"
)


def test_embedder_counter_counts_as_the_minilm_tokenizer(minilm: HFTokenCounter) -> None:
    counter = EmbedderCounter(get_embedder("minilm"))
    texts = ["", "Hello world.", "ünïcödé naïveté", "word " * 600, DENSE_PROSE]
    assert counter.added == 2  # [CLS] and [SEP], left out of chunk sizes
    assert counter.count_batch(texts) == minilm.count_batch(texts)


def test_the_default_index_chunks_exactly_as_before(tmp_path: Path, minilm: HFTokenCounter) -> None:
    # Before chunking counted the embedder's tokens, an index always used Chunker(128, 16) on
    # the MiniLM tokenizer; a MiniLM index must still cut every sample the same way.
    with Index(tmp_path / "idx") as index:
        chunker = index.chunker
        assert (chunker.max_tokens, chunker.overlap) == (128, 16)
        before = Chunker(128, 16, counter=minilm)
        documents = [load(path) for path in sorted(SAMPLES.iterdir())]
        new = list(chunker.chunk_many(documents))
        assert new == list(before.chunk_many(documents))
        assert sum(map(len, new)) == 38  # recorded before the change


def test_an_index_chunks_in_its_own_embedders_tokens(
    tmp_path: Path, minilm: HFTokenCounter
) -> None:
    embedder = HashEmbedder()
    config = IndexConfig(chunk_tokens=40, chunk_overlap=4)  # a sentence: 16 words, 40 MiniLM
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text(DENSE_PROSE)
    with Index(tmp_path / "idx", embedder=embedder, config=config) as index:
        chunks = index.chunker.chunk(load(tmp_path / "docs" / "notes.md"))
        assert index.ingest([tmp_path / "docs"]).chunks == len(chunks) > 1
    sizes = [embedder.count_tokens(c.text) for c in chunks]
    assert max(sizes) == 32  # two sentences fit in the embedder's tokens
    assert max(minilm.count_batch([c.text for c in chunks])) > 40  # not counted in MiniLM's
    in_minilm = Chunker(40, 4, counter=minilm).chunk(load(tmp_path / "docs" / "notes.md"))
    assert len(in_minilm) == 7 > len(chunks)  # MiniLM tokens: one sentence a chunk


def test_chunks_never_exceed_what_the_embedder_reads() -> None:
    chunker = Chunker.for_embedder(HashEmbedder(max_tokens=10), max_tokens=128, overlap=16)
    assert (chunker.max_tokens, chunker.overlap) == (10, 1)  # the overlap shrinks in proportion


class _Bracketing:
    """An embedder that adds two tokens around every text and counts one text per call."""

    name = "bracketing"
    dimension = 64
    max_tokens = 12

    def __init__(self) -> None:
        self.inner = HashEmbedder()

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text) + 2

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> Vectors:
        return self.inner.embed_query(text)


def test_what_a_model_adds_around_a_text_is_left_out(tmp_path: Path) -> None:
    embedder = _Bracketing()
    chunker = Chunker.for_embedder(embedder, max_tokens=128, overlap=0)
    assert chunker.max_tokens == 10  # 12 read, 2 of them the model's own
    assert chunker.counter.count_batch(["one two three", ""]) == [3, 0]
    loaded = markdown_doc(tmp_path, sentences(6))
    assert [words(c.text) for c in chunker.chunk(loaded)] == [6] * 6
    embedder.max_tokens = 2
    with pytest.raises(ConfigError, match=r"'bracketing' reads at most 2 tokens, 2 of them"):
        Chunker.for_embedder(embedder, max_tokens=128, overlap=0)


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(InvalidRequestError, match="max_tokens must be at least 1, got 0"):
        Chunker(max_tokens=0)
    with pytest.raises(InvalidRequestError, match="overlap must be between 0 and max_tokens - 1"):
        Chunker(max_tokens=10, overlap=10)
    with pytest.raises(InvalidRequestError, match="batch_size"):
        next(Chunker(counter=words).chunk_many([], batch_size=0))


def test_chunk_ids_are_stable_and_content_bound(tmp_path: Path) -> None:
    loaded = markdown_doc(tmp_path, "Alpha. Beta.\n")
    first = chunk_document(loaded, counter=words)
    assert first == chunk_document(load(tmp_path / "doc.md"), counter=words)
    changed = markdown_doc(tmp_path, "Alpha. Gamma.\n")
    assert chunk_document(changed, counter=words)[0].id != first[0].id


# --- property: any Markdown-ish document keeps every invariant ------------------------------

word = st.sampled_from(["alpha", "beta", "Gamma", "delta", "e.g.", "Dr.", "x", "3.14", "ünï"])
sentence = st.builds(
    lambda ws, end: " ".join(ws).capitalize() + end,
    st.lists(word, min_size=1, max_size=14),
    st.sampled_from([".", "!", "?", "", "."]),
)
paragraph = st.lists(sentence, min_size=1, max_size=8).map(" ".join)
block = st.one_of(
    paragraph,
    paragraph,
    st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 4), st.sampled_from(["A", "B c"])),
)


@settings(max_examples=150, deadline=None)
@given(
    blocks=st.lists(block, min_size=1, max_size=12),
    max_tokens=st.integers(3, 40),
    overlap_share=st.floats(0, 0.9),
)
def test_invariants_hold_for_generated_documents(
    blocks: list[str], max_tokens: int, overlap_share: float
) -> None:
    from lamina.retrieval._markup import markdown_blocks

    text = "\n\n".join(blocks) + "\n"
    _, parsed = markdown_blocks(text)
    loaded = LoadedDocument(
        document=Document.for_source("gen.md", content_hash="0" * 64), text=text, blocks=parsed
    )
    overlap = int(max_tokens * overlap_share)
    chunks = chunk_document(loaded, max_tokens=max_tokens, overlap=overlap, counter=words)
    assert_exact(loaded, chunks)
    covered = {i for c in chunks for i in range(c.start, c.end)}
    for parsed_block in parsed:
        if parsed_block.kind == "paragraph":
            for i in range(parsed_block.start, parsed_block.end):
                assert i in covered or text[i].isspace()
    starts, ends = sentence_edges(loaded)
    too_long = [
        (s, e)
        for b in parsed
        if b.kind == "paragraph"
        for s, e in split_sentences(text, b.start, b.end)
        if words(text[s:e]) > max_tokens
    ]
    for chunk in chunks:
        assert words(chunk.text) <= max_tokens, chunk.text
        if not any(s < chunk.end and chunk.start < e for s, e in too_long):
            assert chunk.start in starts and chunk.end in ends  # only long sentences are cut
