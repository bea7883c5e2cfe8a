"""Loaders: real files of every format in, text with structure out; bad files raise LoadError."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from lamina.errors import LaminaError
from lamina.retrieval import LoadedDocument, LoadError, iter_jsonl, load
from lamina.retrieval.documents import Block, Document
from lamina.retrieval.loaders import finish
from lamina.settings import LoaderSettings
from tests.hostile.bombs import docx_bomb, nested_html, raw_pdf, text_page
from tests.retrieval.files import make_docx, make_pdf


def assert_spans(loaded: LoadedDocument) -> None:
    for block in loaded.blocks:
        assert loaded.text[block.start : block.end] == block.text
        assert block.text == block.text.strip() and block.text
    starts = [b.start for b in loaded.blocks]
    assert starts == sorted(starts)


def headings(loaded: LoadedDocument) -> list[tuple[int | None, str]]:
    return [(b.level, b.text) for b in loaded.blocks if b.kind == "heading"]


MARKDOWN = """---
title: "The Lamina Guide"
tags: [x]
---
Intro paragraph.

# Lamina

## Install

Run pip. It is quick.

```bash
# not a heading
pip install lamina
```

From source
-----------

Clone it ##.

### Deep ###
- one
- two

***
Last words.
"""


def test_markdown_structure_and_offsets_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    loaded = load(path)
    assert loaded.text == MARKDOWN  # offsets point into the file itself
    assert loaded.document.title == "The Lamina Guide"
    assert headings(loaded) == [(1, "Lamina"), (2, "Install"), (2, "From source"), (3, "Deep")]
    code = [b for b in loaded.blocks if b.kind == "code"]
    assert len(code) == 1 and "# not a heading" in code[0].text
    assert code[0].text.startswith("```bash") and code[0].text.endswith("```")
    paragraphs = [b.text for b in loaded.blocks if b.kind == "paragraph"]
    assert paragraphs == [
        "Intro paragraph.",
        "Run pip. It is quick.",
        "Clone it ##.",
        "- one\n- two",
        "Last words.",
    ]
    assert loaded.document.metadata == {"format": "markdown", "encoding": "utf-8"}
    assert loaded.document.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_spans(loaded)


def test_markdown_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    path = tmp_path / "notes.markdown"
    path.write_text("Text first.\n\n# Real Title\n\nBody.\n")
    assert load(path).document.title == "Real Title"


def test_text_file_paragraphs_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\xef\xbb\xbfFirst line\r\nsame paragraph.\r\n\r\n\r\nSecond.\r\n")
    loaded = load(path)
    assert loaded.text == "First line\nsame paragraph.\n\n\nSecond.\n"
    assert [b.text for b in loaded.blocks] == ["First line\nsame paragraph.", "Second."]
    assert loaded.document.title is None
    assert loaded.document.metadata["encoding"] == "utf-8-sig"
    assert_spans(loaded)


def test_unknown_text_like_extensions_load_as_text(tmp_path: Path) -> None:
    path = tmp_path / "script.py"
    path.write_text("print('hi')\n")
    assert load(path).document.metadata["format"] == "text"


def test_utf16_with_bom_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_bytes("Grüße aus Köln.".encode("utf-16"))
    assert load(path).text == "Grüße aus Köln."


def test_ids_are_stable_and_source_can_be_chosen(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Same text.")
    first, second = load(path), load(path)
    assert first.document.id == second.document.id
    assert first.document.source == str(path.resolve())
    named = load(path, source="docs/a.txt")
    assert named.document.source == "docs/a.txt" and named.document.id != first.document.id
    path.write_text("Changed text.")
    assert load(path).document.content_hash != first.document.content_hash


HTML = """<!doctype html><html><head><title>Lamina &amp; you</title>
<style>body { color: red }</style><script>var tracking = 1;</script></head>
<body>
<header><nav><a href="/">Home</a> <a href="/docs">Docs</a></nav></header>
<aside>Sponsored content</aside>
<main>
  <article>
    <header><h1>Getting   <em>started</em></h1></header>
    <p>Lamina is a <b>local-first</b> stack.
       It runs offline.</p>
    <h2>Install</h2>
    <p>Line one<br>line two</p>
    <pre>pip install lamina
lamina chat</pre>
    <table><tr><th>Flag</th><th>Meaning</th></tr><tr><td>-v</td><td>verbose</td></tr></table>
    <ul><li>First item</li><li>Second item</li></ul>
    <noscript>Enable JS</noscript>
  </article>
</main>
<footer>Copyright 2026</footer>
<script>console.log("x")</script>
</body></html>"""


def test_html_main_text_without_boilerplate(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(HTML)
    loaded = load(path)
    assert loaded.document.title == "Lamina & you"
    assert headings(loaded) == [(1, "Getting started"), (2, "Install")]
    for junk in ("Home", "Sponsored", "tracking", "color", "Copyright", "Enable JS", "console"):
        assert junk not in loaded.text
    paragraphs = [b.text for b in loaded.blocks if b.kind == "paragraph"]
    assert paragraphs == [
        "Lamina is a local-first stack. It runs offline.",
        "Line one\nline two",
        "Flag | Meaning",
        "-v | verbose",
        "First item",
        "Second item",
    ]
    assert [b.text for b in loaded.blocks if b.kind == "code"] == [
        "pip install lamina\nlamina chat"
    ]
    assert_spans(loaded)


def test_html_declared_charset_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "old.htm"
    html = '<html><head><meta charset="windows-1252"><title>Caf\xe9</title></head><body>'
    path.write_bytes((html + "<p>Cr\xe8me br\xfbl\xe9e.</p></body></html>").encode("cp1252"))
    loaded = load(path)
    assert loaded.document.title == "Café"
    assert "Crème brûlée." in loaded.text
    assert loaded.document.metadata["encoding"] == "windows-1252"


def test_html_without_title_uses_first_h1(tmp_path: Path) -> None:
    path = tmp_path / "bare.html"
    path.write_text("<h1>Only heading</h1><div>Some <span>text</span> here.</div>")
    loaded = load(path)
    assert loaded.document.title == "Only heading"
    assert loaded.text == "Only heading\n\nSome text here."


def test_pdf_pages_and_title(tmp_path: Path) -> None:
    path = make_pdf(
        tmp_path / "report.pdf",
        [["Quarterly report. Revenue grew.", "Costs fell (a little)."], ["Page two says hi."]],
        title="Q3 Report",
    )
    loaded = load(path)
    assert loaded.document.title == "Q3 Report"
    assert loaded.document.metadata == {"format": "pdf", "pages": 2}
    assert [(b.page, b.text) for b in loaded.blocks] == [
        (1, "Quarterly report. Revenue grew.\nCosts fell (a little)."),
        (2, "Page two says hi."),
    ]
    assert_spans(loaded)


def test_pdf_with_empty_password_encryption_is_opened(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "locked-open.pdf", [["Readable by anyone."]], password="")
    assert load(path).text == "Readable by anyone."


def test_docx_headings_title_and_tables(tmp_path: Path) -> None:
    loaded = load(make_docx(tmp_path / "guide.docx"))
    assert loaded.document.title == "Lamina Guide"
    assert headings(loaded) == [
        (0, "Lamina Guide"),
        (1, "Install"),
        (2, "From source"),
        (1, "Usage"),
    ]
    paragraphs = [b.text for b in loaded.blocks if b.kind == "paragraph"]
    assert paragraphs == [
        "Lamina runs on Python 3.11. It needs no GPU.",
        "Clone the repository. Then run pip install.",
        "Command | Effect",
        "lamina chat | Opens a chat",
        "That is all.",
    ]
    assert_spans(loaded)
    titled = load(make_docx(tmp_path / "titled.docx", title="From properties"))
    assert titled.document.title == "From properties"


def test_jsonl_beir_corpus(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    rows = [
        {
            "_id": "d1",
            "title": "Aspirin",
            "text": "Aspirin thins blood.\n\nIt is old.",
            "metadata": {"y": 1},
        },
        {"_id": "d2", "title": "", "text": "No title here."},
        {"_id": 3, "title": "Title only", "text": ""},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    docs = list(iter_jsonl(path))
    assert [d.document.metadata["_id"] for d in docs] == ["d1", "d2", "3"]
    first = docs[0]
    assert first.document.title == "Aspirin"
    assert first.document.source == f"{path.resolve()}#d1"
    assert first.document.metadata["record"] == {"y": 1}
    assert first.text == "Aspirin\n\nAspirin thins blood.\n\nIt is old."
    assert [(b.kind, b.text) for b in first.blocks] == [
        ("heading", "Aspirin"),
        ("paragraph", "Aspirin thins blood."),
        ("paragraph", "It is old."),
    ]
    assert docs[1].document.title is None and docs[1].text == "No title here."
    assert docs[2].text == "Title only"
    line = path.read_bytes().split(b"\n")[0]
    assert first.document.content_hash == hashlib.sha256(line).hexdigest()
    for doc in docs:
        assert_spans(doc)
    assert len({d.document.id for d in docs}) == 3


def test_jsonl_bad_lines_raise_or_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(
        b'{"_id": "ok1", "text": "Fine."}\n'
        b"not json\n"
        b'{"title": "no id", "text": "x"}\n'
        b'{"_id": "e", "title": "", "text": ""}\n'
        b"[1, 2]\n"
        b'{"_id": "ok2", "text": "Also fine."}\n'
    )
    with pytest.raises(LoadError, match=r"corpus\.jsonl:2': the line is not valid UTF-8 JSON"):
        list(iter_jsonl(path))
    errors: list[LoadError] = []
    docs = list(iter_jsonl(path, on_error=errors.append))
    assert [d.document.metadata["_id"] for d in docs] == ["ok1", "ok2"]
    assert [e.source.rsplit(":", 1)[1] for e in errors] == ["2", "3", "4", "5"]
    assert "no '_id'" in errors[1].reason and "neither 'title' nor 'text'" in errors[2].reason


# --- bad input: every case is a LoadError naming the file and the reason ----------------------


def expect_load_error(path: Path, *fragments: str, **kwargs: Any) -> LoadError:
    with pytest.raises(LoadError) as caught:
        load(path, **kwargs)
    error = caught.value
    assert isinstance(error, LaminaError)
    assert path.name in str(error)
    for fragment in fragments:
        assert fragment in error.reason, error.reason
    return error


@pytest.mark.parametrize("name", ["empty.txt", "empty.md", "empty.pdf", "empty.docx", "e.html"])
def test_empty_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    expect_load_error(path, "empty (0 bytes)")


def test_whitespace_only_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.md"
    path.write_text(" \n\n\t\n")
    expect_load_error(path, "only whitespace")


def test_binary_behind_a_text_extension(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    expect_load_error(path, "binary file", "NUL byte at offset 8")


def test_non_utf8_text_is_reported_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("Café au lait.".encode("latin-1"))
    expect_load_error(path, "not valid utf-8", "0xe9 at offset 3", "encoding=")
    assert load(path, encoding="cp1252").text == "Café au lait."
    expect_load_error(path, "unknown encoding 'klingon'", encoding="klingon")


def test_bad_byte_far_into_a_large_file_and_split_characters(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    # 'é' is two bytes; an odd prefix puts one straddling the 1 MiB read boundary.
    body = ("x" + "é" * ((1 << 20) // 2 + 10)).encode("utf-8")
    path.write_bytes(body)
    assert load(path).text == body.decode("utf-8")
    path.write_bytes(body + b" \xff tail")
    expect_load_error(path, f"0xff at offset {len(body) + 1}")


def test_corrupt_pdf(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\nthis is not really a pdf at all\n" * 3)
    expect_load_error(path, "not a readable PDF")


def test_truncated_pdf(tmp_path: Path) -> None:
    good = make_pdf(tmp_path / "good.pdf", [["Some text."]])
    path = tmp_path / "truncated.pdf"
    path.write_bytes(good.read_bytes()[:40])
    expect_load_error(path)


def test_encrypted_pdf(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "secret.pdf", [["Top secret."]], password="hunter2")
    expect_load_error(path, "encrypted with a password", "qpdf --decrypt")


def test_pdf_without_text(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "scan.pdf", [[], []])
    expect_load_error(path, "2 page(s) but no extractable text", "OCR")


def test_corrupt_docx(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 not a real zip")
    expect_load_error(path, "not a readable DOCX")


def test_html_with_only_boilerplate(tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    path.write_text("<html><head><script>x()</script></head><body><nav>Menu</nav></body></html>")
    expect_load_error(path, "boilerplate")


def test_missing_file_directory_and_unsupported_formats(tmp_path: Path) -> None:
    expect_load_error(tmp_path / "missing.txt", "cannot be read")
    expect_load_error(tmp_path / "missing.pdf", "cannot be read")
    folder = tmp_path / "folder.md"
    folder.mkdir()
    expect_load_error(folder, "directory")
    legacy = tmp_path / "old.doc"
    legacy.write_bytes(b"\xd0\xcf\x11\xe0")
    expect_load_error(legacy, ".doc files are not supported", "convert it")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("{}\n")
    expect_load_error(corpus, "iter_jsonl")


def test_iter_jsonl_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="cannot be read"):
        list(iter_jsonl(tmp_path / "nope.jsonl"))


# --- issue 9: limits, bombs, one normalisation boundary ---------------------------------------


def test_deep_html_is_refused_in_linear_time_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "deep.html"
    path.write_text(nested_html(100_000))  # 1.2 MB that took minutes to parse
    started = time.perf_counter()
    error = expect_load_error(path, "nest more than 512 deep", "loaders.max_html_depth")
    assert time.perf_counter() - started < 5, error  # a generous bound: the check is one pass


def test_html_under_the_depth_limit_and_unclosed_paragraphs_load(tmp_path: Path) -> None:
    deep = tmp_path / "deep.html"
    deep.write_text(nested_html(400))
    assert load(deep).text.split() == ["x"] * 400
    flat = tmp_path / "paragraphs.html"
    flat.write_text("<body>" + "<p>para" * 5000 + "</body>")  # implied ends: depth 1
    assert len(load(flat).blocks) == 5000


def test_html_depth_limit_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "deep.html"
    path.write_text(nested_html(100))
    expect_load_error(path, "more than 50 deep", limits=LoaderSettings(max_html_depth=50))


def test_a_docx_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    path = docx_bomb(tmp_path / "bomb.docx", 64 << 20)  # 64 MiB of NUL in ~70 kB
    assert path.stat().st_size < 200_000
    expect_load_error(path, "compressed", "times", "loaders.max_compression_ratio")
    huge = docx_bomb(tmp_path / "huge.docx", 3 << 20)
    expect_load_error(
        huge,
        "more than 1048576 bytes",
        "loaders.max_uncompressed_bytes",
        limits=LoaderSettings(max_uncompressed_bytes=1 << 20, max_compression_ratio=1e9),
    )


def test_a_docx_under_the_limits_still_loads(tmp_path: Path) -> None:
    path = docx_bomb(tmp_path / "ok.docx", 0, text="Body text.")
    assert load(path).text == "Body text."


def test_a_pdf_whose_streams_expand_too_far_is_refused_fast(tmp_path: Path) -> None:
    spaces = b" " * (15 << 20)  # 15 MiB of whitespace per page, 15 kB compressed
    path = tmp_path / "bomb.pdf"
    path.write_bytes(raw_pdf([text_page("Hello") + spaces] * 20))
    assert path.stat().st_size < 1_000_000
    started = time.perf_counter()
    expect_load_error(
        path,
        "expand to more than 134217728 bytes",
        "by page 9 of 20",
        limits=LoaderSettings(max_uncompressed_bytes=128 << 20),
    )
    assert time.perf_counter() - started < 30  # refused before any of it is parsed


def test_one_pdf_stream_over_the_cap_fails_only_its_page(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pdf"
    path.write_bytes(raw_pdf([text_page("First page"), text_page("Big") + b" " * (3 << 20)]))
    loaded = load(path, limits=LoaderSettings(max_pdf_stream_bytes=1 << 20))
    assert "First page" in loaded.text
    assert loaded.document.metadata["failed_pages"] == [2]


def test_pypdf_complaints_go_into_the_reason_not_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    whole = raw_pdf([text_page("Hello")])
    path = tmp_path / "truncated.pdf"
    path.write_bytes(whole[: len(whole) // 2])
    expect_load_error(path, "pypdf: ", "EOF marker not found")
    assert capfd.readouterr().err == ""


def test_the_text_limit_applies_to_every_format(tmp_path: Path) -> None:
    small = LoaderSettings(max_document_chars=100)
    long_text = "A sentence of text. " * 20
    (tmp_path / "a.txt").write_text(long_text)
    (tmp_path / "a.md").write_text(long_text)
    (tmp_path / "a.html").write_text(f"<p>{long_text}</p>")
    docx_bomb(tmp_path / "a.docx", 0, text=long_text)
    make_pdf(tmp_path / "a.pdf", [[long_text[:90]], [long_text[:90]]])
    for name in ("a.txt", "a.md", "a.html", "a.docx", "a.pdf"):
        expect_load_error(tmp_path / name, "more than 100 characters", limits=small)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"_id": "1", "text": long_text}) + "\n")
    with pytest.raises(LoadError, match="more than 100 characters"):
        list(iter_jsonl(corpus, limits=small))


def test_one_boundary_replaces_lone_surrogates_and_nul_keeping_offsets(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        '{"_id": "1", "title": "T\\u0000itle", "text": "bad \\ud800 pair\\n\\nnul \\u0000 here"}\n'
        '{"_id": "\\udfff", "text": "an id that is no text"}\n'
    )
    errors: list[LoadError] = []
    (loaded,) = iter_jsonl(corpus, on_error=errors.append)
    assert loaded.text == "T\ufffditle\n\nbad \ufffd pair\n\nnul \ufffd here"
    assert loaded.document.title == "T\ufffditle"
    assert_spans(loaded)
    loaded.text.encode("utf-8")  # encodable: what tokenizers and databases need
    assert "lone UTF-16 surrogate" in errors[0].reason and errors[0].source.endswith(":2")
    pdf = tmp_path / "title.pdf"
    pdf.write_bytes(raw_pdf([text_page("Body")], info=b"/Title <FEFFD8000041>"))
    assert "\x00" not in (load(pdf).document.title or "")
    clean = finish(
        Document.for_source("x", content_hash="0"),
        "a\ud800b",
        [Block(kind="paragraph", text="a\ud800b", start=0, end=3)],
        LoaderSettings(),
        "x",
    )
    assert clean.text == clean.blocks[0].text == "a\ufffdb"


def test_a_file_name_that_is_not_utf8_gets_a_stable_printable_source(tmp_path: Path) -> None:
    from lamina.retrieval.index import Index
    from lamina.testing import HashEmbedder

    folder = tmp_path / "docs"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.md")  # a Latin-1 file name: Python holds it with a surrogate
    (folder / name).write_text("# Cafe\n\nA note about coffee.\n")
    index = Index(tmp_path / "idx", embedder=HashEmbedder())
    summary = index.ingest([folder])
    assert summary.added == 1 and summary.skipped == []
    hit = index.search("coffee", k=1)[0]
    assert hit.chunk.source.endswith("caf\\xe9.md")
    assert index.ingest([folder]).unchanged == 1
