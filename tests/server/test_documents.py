"""Uploads, ingest jobs, listing, reading a span and deleting documents over HTTP; what a
job says when the server stops under it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from lamina.server import create_app
from lamina.server.jobs import KILLED, SHUTDOWN, Job, JobFile, JobQueue
from lamina.server.library import Library
from lamina.server.tenancy import LOCAL, Tenant
from lamina.settings import ServerSettings, Settings

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "corpus"
GUIDE = b"""# Velmora field guide

Velmora is a small island nation in the northern sea.

## Capital

The capital of Velmora is Ostrava Nova, a harbour city of red roofs.
"""


@pytest.fixture(scope="session")
def minilm() -> Any:
    from lamina.models.embeddings import get_embedder

    return get_embedder("minilm")


def build(home: Path, embedder: Any, **server: Any) -> FastAPI:
    settings = Settings(
        home=home, model="scripted", cache=False, max_retries=0, server=ServerSettings(**server)
    )
    return create_app(settings, warm_up=False, index_embedder=embedder)


def request(app: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def upload(
    app: FastAPI,
    files: list[tuple[str, bytes]],
    collection: str = "default",
    headers: dict[str, str] | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """POST /v1/documents, then poll the job until it ends; returns the last job state."""
    r = request(
        app,
        "POST",
        "/v1/documents",
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
        data={"collection": collection},
        headers=headers or {},
    )
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    deadline = time.monotonic() + 60
    while wait and job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = request(app, "GET", f"/v1/jobs/{job['id']}", headers=headers or {}).json()
    return job


def test_upload_list_read_span_delete(tmp_path: Path, minilm: Any) -> None:
    app = build(tmp_path / "home", minilm)
    job = upload(
        app,
        [
            ("guide.md", GUIDE),
            ("lora.pdf", (SAMPLES / "lora.pdf").read_bytes()),
            ("photo.txt", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20),
            ("empty.md", b"   \n"),
        ],
        collection="docs",
    )
    assert job["state"] == "done" and (job["done"], job["total"]) == (4, 4)
    by_name = {f["name"]: f for f in job["files"]}
    assert by_name["guide.md"]["state"] == "done" and by_name["guide.md"]["chunks"] >= 1
    assert by_name["lora.pdf"]["state"] == "done"
    assert "it is a PNG image, not a document" in by_name["photo.txt"]["error"]
    assert "whitespace" in by_name["empty.md"]["error"]  # the loader's reason, per file

    listed = request(app, "GET", "/v1/documents").json()["data"]
    assert sorted(d["name"] for d in listed) == ["guide.md", "lora.pdf"]
    assert all(d["collection"] == "docs" and d["own"] for d in listed)
    assert request(app, "GET", "/v1/documents", params={"collection": "docs"}).json()["data"]
    collections = request(app, "GET", "/v1/collections").json()["data"]
    assert [(c["name"], c["documents"]) for c in collections] == [("docs", 2)]

    guide = next(d for d in listed if d["name"] == "guide.md")
    start = GUIDE.decode().index("The capital")
    end = GUIDE.decode().index(" a harbour")
    span = request(
        app,
        "GET",
        f"/v1/documents/{guide['id']}/text",
        params={"start": start, "end": end, "context": 20},
    ).json()
    assert span["text"] == "The capital of Velmora is Ostrava Nova,"
    assert span["before"] == GUIDE.decode()[start - 20 : start]
    assert span["after"] == GUIDE.decode()[end : end + 20]
    assert span["page"] is None and span["length"] == len(GUIDE.decode())

    pdf = next(d for d in listed if d["name"] == "lora.pdf")
    whole = request(app, "GET", f"/v1/documents/{pdf['id']}/text", params={"start": 0}).json()
    assert whole["page"] == 1
    length = whole["length"]
    tail = request(
        app, "GET", f"/v1/documents/{pdf['id']}/text", params={"start": length - 10, "end": length}
    ).json()
    assert tail["page"] == 2  # the sample PDF has two pages

    stored = tmp_path / "home" / "server" / "files" / LOCAL / "docs" / "guide.md"
    assert stored.read_bytes() == GUIDE
    gone = request(app, "DELETE", f"/v1/documents/{guide['id']}")
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert not stored.exists()
    assert [d["name"] for d in request(app, "GET", "/v1/documents").json()["data"]] == ["lora.pdf"]
    again = request(app, "GET", f"/v1/documents/{guide['id']}/text")
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    assert request(app, "DELETE", f"/v1/documents/{guide['id']}").status_code == 404


def test_reupload_replaces_and_a_refused_version_keeps_the_old_one(
    tmp_path: Path, minilm: Any
) -> None:
    app = build(tmp_path / "home", minilm)
    upload(app, [("notes.md", b"# Notes\n\nThe first version says apples.\n")])
    job = upload(app, [("notes.md", b"# Notes\n\nThe second version says pears.\n")])
    assert job["files"][0]["state"] == "done"
    (doc,) = request(app, "GET", "/v1/documents").json()["data"]
    text = request(app, "GET", f"/v1/documents/{doc['id']}/text").json()
    assert "pears" in text["text"]
    job = upload(app, [("notes.md", b"caf\xe9 is not UTF-8 \xff\n")])  # the loader refuses it
    assert job["state"] == "failed" and "UTF-8" in job["files"][0]["error"]
    (doc,) = request(app, "GET", "/v1/documents").json()["data"]
    assert "pears" in request(app, "GET", f"/v1/documents/{doc['id']}/text").json()["text"]
    stored = tmp_path / "home" / "server" / "files" / LOCAL / "default" / "notes.md"
    assert b"pears" in stored.read_bytes()


def test_nothing_acceptable_is_400_and_no_job(tmp_path: Path, minilm: Any) -> None:
    app = build(tmp_path / "home", minilm)
    r = request(
        app,
        "POST",
        "/v1/documents",
        files=[("files", ("../../etc/passwd", b"root:x:0:0", "text/plain"))],
    )
    assert r.status_code == 400
    assert "Refused filename '../../etc/passwd': it contains a path separator" in r.text
    assert request(app, "GET", "/v1/jobs").json()["data"] == []
    assert not list((tmp_path / "home" / "server" / "staging").glob("*/*"))


def test_upload_limits(tmp_path: Path, minilm: Any) -> None:
    app = build(
        tmp_path / "home",
        minilm,
        max_body_bytes=2000,
        upload_limit_bytes=50_000,
        max_upload_files=2,
    )
    big = b"# Big\n\n" + b"Velmora has many long sentences about its harbour. " * 200  # ~10 kB
    job = upload(app, [("big.md", big)])  # over max_body_bytes, under upload_limit_bytes
    assert job["state"] == "done"
    r = request(
        app,
        "POST",
        "/v1/documents",
        files=[("files", ("huge.md", b"x" * 60_000, "text/plain"))],
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = request(
        app,
        "POST",
        "/v1/documents",
        files=[("files", (f"{i}.md", b"# x\n\ny", "text/plain")) for i in range(3)],
    )
    assert r.status_code == 400 and "server.max_upload_files" in r.text
    r = request(app, "POST", "/v1/ask", json={"question": "x" * 3000})
    assert r.status_code == 413  # every other route keeps max_body_bytes


class Gate:
    """An embedder that waits for ``release`` before its second call: an ingest in progress."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed_documents(self, texts: Any) -> Any:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30)
        return self.inner.embed_documents(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / str(i)
        path.write_bytes(f"# Doc {i}\n\nVelmora fact number {i}.\n".encode())
        paths.append(path)
    return paths


def test_shutdown_finishes_the_file_in_progress_and_fails_the_rest_visibly(
    tmp_path: Path, minilm: Any
) -> None:
    settings = Settings(home=tmp_path / "home")
    gate = Gate(minilm)
    library = Library(settings, embedder=gate)
    jobs = JobQueue(library, max_queued=4)
    tenant = Tenant(LOCAL, None, True)
    first = jobs.new_id()
    staged = _files(library.staging(first), 3)
    job = Job(id=first, collection="c", files=[JobFile(name=f"{i}.md", size=1) for i in range(3)])
    jobs.submit(job, tenant, "local/c", list(staged))
    second = jobs.new_id()
    queued = Job(id=second, collection="c", files=[JobFile(name="x.md", size=1)])
    jobs.submit(queued, tenant, "local/c", list(_files(library.staging(second), 1)))
    assert gate.entered.wait(30)  # file 0 is being embedded
    closer = threading.Thread(target=jobs.close, args=(30,))
    closer.start()
    time.sleep(0.2)
    gate.release.set()
    closer.join(30)
    jobs = JobQueue(library, max_queued=4)  # as after a restart: outcomes were kept
    done = jobs.get(tenant, first)
    assert done.state == "failed"
    assert [(f.name, f.state, f.error) for f in done.files] == [
        ("0.md", "done", None),
        ("1.md", "failed", SHUTDOWN),
        ("2.md", "failed", SHUTDOWN),
    ]
    assert jobs.get(tenant, second).files[0].error == SHUTDOWN
    assert [d.name for d in library.documents(tenant)] == ["0.md"]
    assert not (library.root / "staging" / first).exists()
    with pytest.raises(Exception, match="shutting down"):
        closed = JobQueue(library, max_queued=4)
        closed.close(1)
        closed.submit(Job(id="job-x", collection="c"), tenant, "local/c", [])


def test_a_job_left_running_by_a_killed_server_is_marked_failed(
    tmp_path: Path, minilm: Any
) -> None:
    settings = Settings(home=tmp_path / "home")
    gate = Gate(minilm)
    library = Library(settings, embedder=gate)
    jobs = JobQueue(library, max_queued=4)
    tenant = Tenant(LOCAL, None, True)
    job_id = jobs.new_id()
    staged = _files(library.staging(job_id), 2)
    job = Job(id=job_id, collection="c", files=[JobFile(name=f"{i}.md", size=1) for i in range(2)])
    jobs.submit(job, tenant, "local/c", list(staged))
    assert gate.entered.wait(30)
    # A new process opens the same data directory while the first is stuck (as if killed).
    restarted = JobQueue(Library(settings, embedder=minilm), max_queued=4)
    seen = restarted.get(tenant, job_id)
    assert seen.state == "failed"
    assert {f.error for f in seen.files} == {KILLED}
    gate.release.set()


def test_the_embedder_is_given_vectors_of_the_index_dimension(minilm: Any) -> None:
    vectors = minilm.embed_documents(["a", "b"])
    assert np.asarray(vectors).shape == (2, minilm.dimension)
