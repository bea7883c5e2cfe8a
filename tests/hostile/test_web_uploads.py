"""Hostile uploads: names that try to leave the data folder, content that lies about its type,
a DOCX bomb, hostile collection names and spans. Each is refused with its reason, the rest of
the upload lands, and nothing is written outside the server's data folder."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.server.test_documents import GUIDE, build, minilm, request, upload

__all__ = ["minilm"]

BAD_NAMES = [
    ("../../etc/passwd", "path separator"),
    ("/etc/passwd", "path separator"),
    ("..", "not a file name"),
    ("a\\b.md", "path separator"),
    ("C:evil.md", "drive path"),
    ("CON.md", "reserved device name"),
    ("x" * 300 + ".md", "longer than 255 bytes"),
]


def _docx_bomb() -> bytes:
    """A .docx whose document.xml expands 1000-fold: refused by the loaders' zip check."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"<w:document>" + b" " * 8_000_000 + b"</w:document>")
    return buffer.getvalue()


LIARS = [
    ("tool.md", b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "an ELF executable"),
    ("photo.txt", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "a PNG image"),
    ("paper.txt", b"%PDF-1.7\n...", "it is a PDF; name it .pdf"),
    ("fake.pdf", b"<html>not a pdf</html>", "is not a PDF"),
    ("fake.docx", b"plain text pretending", "not a Word document"),
    ("archive.docx", b"", "the file is empty"),
    ("data.bin.md", b"abc\x00def", "NUL byte"),
    ("old.md", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "old Office file"),
]


def test_hostile_names_and_lying_content_are_refused_one_by_one(
    tmp_path: Path, minilm: Any
) -> None:
    app = build(tmp_path / "home", minilm)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("readme.txt", "not word")
    files = [
        ("good.md", GUIDE),
        *[(name, b"# x\n\ny") for name, _ in BAD_NAMES],
        *[(name, data) for name, data, _ in LIARS],
        ("notword.docx", zipped.getvalue()),
        ("bomb.docx", _docx_bomb()),
    ]
    job = upload(app, files)
    assert job["state"] == "done"
    states = [(f["name"], f["state"], f["error"] or "") for f in job["files"]]
    assert states[0][:2] == ("good.md", "done")
    for (_, why), (_, state, error) in zip(BAD_NAMES, states[1:], strict=False):
        assert state == "failed" and why in error, error
    for (_, _, why), (_, state, error) in zip(LIARS, states[1 + len(BAD_NAMES) :], strict=False):
        assert state == "failed" and why in error, error
    assert states[-2][1] == "failed" and "word/document.xml" in states[-2][2]
    assert states[-1][1] == "failed" and "compress" in states[-1][2].lower(), states[-1]
    listed = request(app, "GET", "/v1/documents").json()["data"]
    assert [d["name"] for d in listed] == ["good.md"]
    data = tmp_path / "home" / "server"
    traces = tmp_path / "home" / "traces"  # the ingest's spans: Lamina's own trace store
    outside = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file()
        and not p.is_relative_to(data)
        and not p.is_relative_to(traces)
        and "keys" not in p.name
    ]
    assert outside == [], outside
    assert not (tmp_path / "etc").exists()


def test_control_characters_in_a_raw_multipart_name(tmp_path: Path, minilm: Any) -> None:
    """Clients percent-encode such names; a hand-made body does not."""
    app = build(tmp_path / "home", minilm)
    for name in (b"nul\x00.md", b"bell\x07.md", b"rtl\xe2\x80\xae.md"):
        body = (
            b'--B\r\nContent-Disposition: form-data; name="files"; filename="'
            + name
            + b'"\r\nContent-Type: text/plain\r\n\r\n# x\n\ny\r\n--B--\r\n'
        )
        r = request(
            app,
            "POST",
            "/v1/documents",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=B"},
        )
        assert r.status_code == 400, (name, r.text)
        assert "control character" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("collection", ["../x", "a b", "x" * 65, ".hidden", "é", "docs\n", "a/b/c"])
def test_hostile_collection_names(tmp_path: Path, minilm: Any, collection: str) -> None:
    app = build(tmp_path / "home", minilm)
    r = request(
        app,
        "POST",
        "/v1/documents",
        files=[("files", ("a.md", GUIDE))],
        data={"collection": collection},
    )
    assert r.status_code in (400, 404), r.text
    assert r.json()["error"]["message"]
    assert not (tmp_path / "home" / "server" / "files").exists() or not any(
        (tmp_path / "home" / "server" / "files").rglob("a.md")
    )


def test_hostile_spans_and_ids(tmp_path: Path, minilm: Any) -> None:
    app = build(tmp_path / "home", minilm)
    upload(app, [("guide.md", GUIDE)])
    (doc,) = request(app, "GET", "/v1/documents").json()["data"]
    url = f"/v1/documents/{doc['id']}/text"
    length = len(GUIDE.decode())
    cases = [
        ({"start": -1}, 400),
        ({"start": 10, "end": 5}, 400),
        ({"start": 0, "end": length + 1}, 400),
        ({"start": 2**40}, 400),
        ({"start": 0, "context": 10**6}, 400),
        ({"start": "x"}, 400),
    ]
    for params, status in cases:
        r = request(app, "GET", url, params=params)
        assert r.status_code == status, (params, r.text)
        assert r.json()["error"]["message"]
    for bad in ("../../keys", "0" * 31, "Z" * 32, "%2e%2e%2fkeys.sqlite"):
        r = request(app, "GET", f"/v1/documents/{bad}/text")
        assert r.status_code in (400, 404), (bad, r.text)
    for job_id in ("../jobs.sqlite", "job-" + "0" * 16, "' OR 1=1 --"):
        assert request(app, "GET", f"/v1/jobs/{job_id}").status_code == 404
