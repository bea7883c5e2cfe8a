"""SIGTERM while an ingest job runs, on a real ``lamina serve`` process: the file in progress
finishes, every other file of the job is marked failed with the reason, and what the job says
was ingested is exactly what the index holds after a restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from lamina.server.jobs import SHUTDOWN, JobQueue
from lamina.server.library import Library
from lamina.server.tenancy import Tenant, tenant_id
from lamina.settings import Settings
from tests.web.conftest import Served

pytestmark = pytest.mark.integration


def test_sigterm_during_an_ingest_fails_the_rest_visibly(tmp_path: Path) -> None:
    server = Served(tmp_path / "home")
    auth = {"Authorization": f"Bearer {server.key}"}
    files = [
        ("files", (f"doc{i:03}.md", f"# Doc {i}\n\nVelmora fact number {i}.\n".encode()))
        for i in range(60)
    ]
    try:
        r = httpx.post(f"{server.url}/v1/documents", files=files, headers=auth, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:
            job = httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=auth).json()
            if job["done"] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert job["state"] == "running", job
        server.process.send_signal(signal.SIGTERM)
        # uvicorn drains, runs the shutdown, then re-raises the signal it caught
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Finished server process" in server.log.read_text()
    finally:
        server.stop()
    library = Library(Settings(home=server.home))
    tenant = Tenant(tenant_id("browser"), "browser", False)
    final = JobQueue(library, max_queued=1).get(tenant, job_id)
    assert final.state == "failed" and final.done == final.total == 60
    done = [f.name for f in final.files if f.state == "done"]
    failed = [f for f in final.files if f.state == "failed"]
    assert done and failed, final  # it stopped part way
    assert {f.error for f in failed} == {SHUTDOWN}
    assert sorted(d.name for d in library.documents(tenant)) == sorted(done)
    library.close()
