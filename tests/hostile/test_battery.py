"""The battery of issue 9, kept: what an attacker or a careless user sends to ``lamina serve``
and feeds to ``lamina ingest``. Each case names what must happen; none may crash, hang, leak
or lose data. (The fixes of issue 9 have their own regression tests beside this file and in
tests/server and tests/retrieval; here are the cases, old and new, that must stay handled.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lamina.errors import InvalidRequestError
from lamina.retrieval import LoadError, load
from lamina.retrieval.index import Index
from lamina.retrieval.store.sqlite import SQLiteStore
from lamina.testing import HashEmbedder
from tests.hostile.bombs import docx_bomb, raw_pdf, text_page
from tests.server.conftest import call

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "lamina", "messages": [{"role": "user", "content": "hi"}]}


def _error(response: Any) -> dict[str, Any]:
    """The OpenAI-shaped error of a 4xx, checked for shape."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error: dict[str, Any] = response.json()["error"]
    assert error["message"] and error["type"]
    return error


# --- the API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"null",
        b"[]",
        b'"a string"',
        b'{"messages": "not a list"}',
        b'{"messages": [{"role": "wizard", "content": "x"}]}',
        b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
        b"[" * 50_000 + b"]" * 50_000,  # nesting deeper than json.loads recurses
        b'{"messages": [], "temperature": 1e999}',
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"messages": [{"role": "tool", "content": "no call id"}]}',
    ],
)
def test_malformed_chat_bodies_are_4xx_never_5xx(make_app: Any, raw: bytes) -> None:
    r = call(
        make_app(),
        "POST",
        "/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json"},
    )
    if r.status_code == 200:  # a tool turn may be accepted by a model that takes them
        assert raw.startswith(b'{"messages": [{"role": "tool"')
        return
    _error(r)


def test_empty_messages_are_400(make_app: Any) -> None:
    error = _error(call(make_app(), "POST", "/v1/chat/completions", json={**CHAT, "messages": []}))
    assert "messages" in error["message"]


def test_five_thousand_messages_are_answered_or_refused_cleanly(make_app: Any) -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "w"} for i in range(5000)
    ]
    r = call(make_app(), "POST", "/v1/chat/completions", json={**CHAT, "messages": messages})
    assert r.status_code in (200, 400), r.text[:300]


def test_every_route_refuses_unknown_models_the_same_way(make_app: Any) -> None:
    app = make_app()
    for url, body in [
        ("/v1/chat/completions", CHAT),
        ("/v1/completions", {"prompt": "x"}),
        ("/v1/embeddings", {"input": "x"}),
    ]:
        for model in ("../../etc/passwd", "x" * 10_000, "\u202egnp.exe", "lamina\x00"):
            error = _error(call(app, "POST", url, json={**body, "model": model}))
            assert error["code"] == "model_not_found"
            assert len(error["message"]) < 400  # a long name is cut, not echoed whole
    _error(call(app, "GET", "/v1/models/local:%2Fetc%2Fshadow"))


# --- documents --------------------------------------------------------------------------------


def _expect_skip(path: Path, *words: str) -> str:
    with pytest.raises(LoadError) as caught:
        load(path)
    for word in words:
        assert word in caught.value.reason, caught.value.reason
    return caught.value.reason


def test_empty_truncated_and_random_pdfs_and_docx(tmp_path: Path) -> None:
    whole = raw_pdf([text_page("Hello there")])
    cases = {
        "empty.pdf": b"",
        "truncated.pdf": whole[: len(whole) // 3],
        "random.pdf": os.urandom(5000),
        "header-only.pdf": b"%PDF-1.7\n",
        "empty.docx": b"",
        "random.docx": os.urandom(5000),
        "truncated.docx": docx_bomb(tmp_path / "ok.docx", 0).read_bytes()[:600],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        _expect_skip(tmp_path / name)


def test_a_zip_that_is_not_a_docx_and_one_with_many_members(tmp_path: Path) -> None:
    plain = tmp_path / "plain.docx"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("hello.txt", "not word")
    _expect_skip(plain, "DOCX")
    many = tmp_path / "many.docx"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(10_001):
            z.writestr(f"p{i}", b"")
    _expect_skip(many, "zip members")


def test_billion_laughs_docx_is_not_expanded(tmp_path: Path) -> None:
    laughs = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY l0 "lol">{laughs}]>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>"
    )
    path = docx_bomb(tmp_path / "laughs.docx", 0)
    data = zipfile.ZipFile(path).read
    names = zipfile.ZipFile(path).namelist()
    parts = {name: data(name) for name in names}
    parts["word/document.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in parts.items():
            z.writestr(name, content)
    started = time.perf_counter()
    try:
        loaded = load(path)
        assert len(loaded.text) < 10_000  # the entities were not expanded to 10^9 "lol"s
    except LoadError:
        pass
    assert time.perf_counter() - started < 10


def test_latin1_text_and_nul_bytes(tmp_path: Path) -> None:
    (tmp_path / "latin.md").write_bytes("# Caf\xe9\n\nCr\xe8me br\xfbl\xe9e.".encode("latin-1"))
    _expect_skip(tmp_path / "latin.md", "not valid utf-8", "encoding=")
    assert "Crème" in load(tmp_path / "latin.md", encoding="latin-1").text
    (tmp_path / "nul.txt").write_bytes(b"text\x00more")
    _expect_skip(tmp_path / "nul.txt", "binary")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "secret.md"
    path.write_text("# secret")
    path.chmod(0)
    _expect_skip(path, "cannot be read")


def test_unreadable_entries_and_symlink_loops_in_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "dangling.md").symlink_to(tmp_path / "gone.md")
    (folder / "a folder.md").mkdir()
    os.mkfifo(folder / "pipe.md")  # reading it would block forever
    (folder / "ok.md").write_text("# Fine\n\nA readable note.")
    index = Index(tmp_path / "idx", embedder=HashEmbedder())
    done = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        result["summary"] = index.ingest([folder])
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(60), "the ingest hung on a FIFO or a symlink loop"
    summary = result["summary"]
    assert summary.added == 1


def test_a_dangling_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "link.md").symlink_to(tmp_path / "nowhere.md")
    with pytest.raises(InvalidRequestError, match="no such file"):
        Index(tmp_path / "idx", embedder=HashEmbedder()).ingest([tmp_path / "link.md"])


# --- ingest under fire ------------------------------------------------------------------------


def _corpus(path: Path, n: int) -> Path:
    lines = [
        json.dumps({"_id": f"d{i}", "title": f"Doc {i}", "text": f"Body of document {i}."})
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kill_9_during_a_jsonl_ingest_then_resume(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus.jsonl", 60)
    index_dir = tmp_path / "idx"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.retrieval.ingest_worker", str(index_dir), str(corpus), "0.1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().startswith("ready")
    for _ in range(3):
        worker.stdout.readline()  # three batches committed
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    partial = SQLiteStore(index_dir).count()[0]
    assert 0 < partial < 60
    index = Index(index_dir, embedder=HashEmbedder())
    summary = index.ingest([corpus])
    assert summary.skipped == [] and summary.unchanged == partial
    assert index.count()[0] == 60
    assert "interrupted" in [r["status"] for r in index.store.runs()]


def test_concurrent_ingests_into_one_index(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus.jsonl", 40)
    index_dir = tmp_path / "idx"
    Index(index_dir, embedder=HashEmbedder()).close()  # created once, then two writers
    script = (
        "import sys; from lamina.retrieval.index import Index; "
        "from lamina.testing import HashEmbedder; "
        "print(Index(sys.argv[1], embedder=HashEmbedder(0.02)).ingest([sys.argv[2]]).added)"
    )
    # The second writer waits for the first (fail-fast, the default, is tested in
    # tests/retrieval/test_index.py); either way nothing may be written twice or lost.
    env = {**os.environ, "LAMINA_RETRIEVAL__INGEST_WAIT_S": "120"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(index_dir), str(corpus)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    index = Index(index_dir, embedder=HashEmbedder())
    assert index.count()[0] == 40  # no document twice, none lost
    sources = index.store.sources("default")
    assert sorted(s.rsplit("#", 1)[1] for s in sources) == sorted(f"d{i}" for i in range(40))
