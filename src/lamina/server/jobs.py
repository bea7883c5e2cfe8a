"""Ingest jobs: uploads are stored at once and ingested in the background, one job at a time.

``POST /v1/documents`` checks each file (name, size, type by content), writes the accepted
ones to ``staging/JOB/`` and returns the job; a single worker thread then ingests the job's
files one by one (ingest is CPU-bound: one at a time keeps the machine for the requests). Each
file moves to ``files/TENANT/COLLECTION/NAME`` and goes through ``Index.ingest``; a file the
loaders refuse is reported with its reason and the rest goes on. ``GET /v1/jobs/{id}`` shows
``state`` (``queued``, ``running``, ``done``, ``failed``), ``done``/``total`` files, the file in
progress and each file's error.

A job is ``done`` when it ran to its end, whether or not some files were refused (each says
why); ``failed`` when it could not: every file was refused, the embedder failed, or the server
stopped. Jobs are kept in ``jobs.sqlite``, so their outcome survives a restart, but a job does
not resume: on SIGTERM the worker finishes the file in progress (within
``server.shutdown_grace_s``; every file's ingest is its own transaction) and marks every file
not yet ingested ``failed`` with "the server shut down before this file was ingested; upload it
again". A job found ``queued`` or ``running`` when the server starts (the process was killed)
is marked failed the same way. Nothing is dropped without its job saying so.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lamina.errors import LaminaError, OverloadedError
from lamina.server.library import Library
from lamina.server.tenancy import NotFoundError, Tenant

__all__ = ["Job", "JobFile", "JobQueue", "JobsClosedError"]

log = logging.getLogger("lamina.server.jobs")

JobState = Literal["queued", "running", "done", "failed"]
FileState = Literal["queued", "running", "done", "failed"]
SHUTDOWN = "the server shut down before this file was ingested; upload it again"
KILLED = "the server stopped before this file was ingested (it was killed); upload it again"


class JobsClosedError(LaminaError):
    """The server is shutting down and takes no new ingest job (HTTP 503)."""

    code = "shutting_down"


class JobFile(BaseModel):
    """One file of a job."""

    name: str
    size: int
    state: FileState = "queued"
    error: str | None = None
    #: Documents it yielded (a JSONL file yields one per record) and their chunks.
    documents: int = 0
    chunks: int = 0


class Job(BaseModel):
    id: str
    object: Literal["ingest_job"] = "ingest_job"
    collection: str = Field(description="The collection as the uploader names it.")
    state: JobState = "queued"
    done: int = Field(0, description="Files finished (ingested or refused).")
    total: int = 0
    current: str | None = Field(None, description="The file being ingested.")
    files: list[JobFile] = Field(default_factory=list)
    created: float = Field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None


class _Entry:
    """A job with what only the server sees: its tenant, stored collection, staged files."""

    def __init__(self, job: Job, tenant: str, stored: str, staged: list[Path | None]) -> None:
        self.job = job
        self.tenant = tenant
        self.stored = stored
        self.staged = staged


class JobQueue:
    """The ingest jobs of one server: submit, look up by tenant, one worker thread."""

    def __init__(self, library: Library, *, max_queued: int) -> None:
        self.library = library
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Entry] = deque()
        self._active: dict[str, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._closing = False
        self._db: sqlite3.Connection | None = None

    # -- persistence ------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.library.root.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.library.root / "jobs.sqlite", check_same_thread=False, isolation_level=None
            )
            db.execute("PRAGMA busy_timeout=5000")
            if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                db.executescript(
                    "BEGIN; CREATE TABLE jobs (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
                    "created REAL NOT NULL, body TEXT NOT NULL); "
                    "CREATE INDEX jobs_tenant ON jobs (tenant, created); "
                    "PRAGMA user_version = 1; COMMIT;"
                )
            self._db = db
            self._fail_interrupted(db)
        return self._db

    def _fail_interrupted(self, db: sqlite3.Connection) -> None:
        """Jobs left queued or running by a process that died: say so, for good."""
        for job_id, tenant, body in db.execute("SELECT id, tenant, body FROM jobs").fetchall():
            job = Job.model_validate_json(body)
            if job.state in ("queued", "running") and job_id not in self._active:
                _fail_rest(job, KILLED)
                self._save_with(db, job, tenant)
                shutil.rmtree(self.library.root / "staging" / job_id, ignore_errors=True)

    @staticmethod
    def _save_with(db: sqlite3.Connection, job: Job, tenant: str) -> None:
        db.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?)",
            (job.id, tenant, job.created, job.model_dump_json()),
        )

    def _save(self, entry: _Entry) -> None:
        with self._lock:
            self._save_with(self._conn(), entry.job, entry.tenant)

    # -- the API ----------------------------------------------------------------------------

    def new_id(self) -> str:
        return "job-" + secrets.token_hex(8)

    def submit(
        self,
        job: Job,
        tenant: Tenant,
        stored: str,
        staged: list[Path | None],
    ) -> Job:
        """Queue ``job`` (its files already staged; ``None`` for a refused file)."""
        entry = _Entry(job, tenant.id, stored, staged)
        with self._lock:
            if self._closing:
                raise JobsClosedError(
                    "The server is shutting down and takes no new uploads; retry in a moment."
                )
            if len(self._queue) >= self.max_queued:
                raise OverloadedError(
                    f"{len(self._queue)} ingest jobs are waiting (server.max_queued_jobs="
                    f"{self.max_queued}); retry after the Retry-After delay.",
                    status=429,
                    retry_after=5.0,
                )
            job.total = len(job.files)
            job.done = sum(f.state == "failed" for f in job.files)
            self._save_with(self._conn(), job, tenant.id)
            self._active[job.id] = entry
            self._queue.append(entry)
            self._start_worker()
            self._wake.notify()
        return job.model_copy(deep=True)

    def get(self, tenant: Tenant, job_id: str) -> Job:
        with self._lock:
            entry = self._active.get(job_id)
            if entry is not None:
                if entry.tenant == tenant.id:
                    return entry.job.model_copy(deep=True)
            else:
                row = (
                    self._conn()
                    .execute(
                        "SELECT body FROM jobs WHERE id = ? AND tenant = ?", (job_id, tenant.id)
                    )
                    .fetchone()
                )
                if row is not None:
                    return Job.model_validate_json(row[0])
        raise NotFoundError(f"No ingest job {job_id[:64]!r}. GET /v1/jobs lists yours.")

    def list(self, tenant: Tenant, limit: int = 50) -> list[Job]:
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, body FROM jobs WHERE tenant = ? ORDER BY created DESC LIMIT ?",
                    (tenant.id, limit),
                )
                .fetchall()
            )
            return [
                self._active[i].job.model_copy(deep=True)
                if i in self._active
                else Job.model_validate_json(body)
                for i, body in rows
            ]

    def open(self) -> None:
        """Take jobs again (the server's startup; a new queue takes them from the start)."""
        with self._lock:
            self._closing = False

    def close(self, grace_s: float) -> None:
        """Take no new job; let the file in progress finish (up to ``grace_s``); every file
        not ingested by then is marked failed, visibly."""
        with self._lock:
            self._closing = True
            waiting = list(self._queue)
            self._queue.clear()
            self._wake.notify_all()
            thread = self._thread
        for entry in waiting:
            _fail_rest(entry.job, SHUTDOWN)
            self._finish(entry)
        if thread is not None:
            thread.join(timeout=grace_s)
            if thread.is_alive():
                log.warning(
                    "an ingest was still running after %.0f s; its job is marked "
                    "failed at the next start",
                    grace_s,
                )
        with self._lock:
            if self._db is not None and (thread is None or not thread.is_alive()):
                self._db.close()
                self._db = None

    # -- the worker -------------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="lamina-ingest", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                entry = self._queue.popleft()
            try:
                self._run(entry)
            except Exception:  # our bug: the job says so, the worker goes on
                log.exception("ingest job %s failed", entry.job.id)
                _fail_rest(entry.job, "the server failed while ingesting (see its log)")
            self._finish(entry)

    def _run(self, entry: _Entry) -> None:
        job = entry.job
        job.state = "running"
        job.started = time.time()
        self._save(entry)
        for number, (item, staged) in enumerate(zip(job.files, entry.staged, strict=True)):
            if item.state != "queued" or staged is None:
                continue
            if self._closing:
                _fail_rest(job, SHUTDOWN)
                return
            item.state = "running"
            job.current = item.name
            try:
                self._ingest(entry, item, staged)
            except LaminaError as exc:
                # the embedder or the configuration, not this file: nothing else will land
                item.state, item.error = "failed", str(exc)
                job.done += 1
                _fail_rest(job, f"not ingested: the job stopped at {item.name!r} ({exc})")
                return
            job.done += 1
            job.current = None
            log.info("job %s: %s %s (%d/%d)", job.id, item.name, item.state, number + 1, job.total)
            self._save(entry)

    def _ingest(self, entry: _Entry, item: JobFile, staged: Path) -> None:
        target = self.library.file_path(entry.stored, item.name)
        previous = target.with_name(f".{target.name}.previous")
        if target.exists():
            os.replace(target, previous)
        os.replace(staged, target)

        def progress(done: int, total: int | None, source: str) -> None:
            item.documents = done

        try:
            summary = self.library.ingest(entry.stored, target, progress)
        except BaseException:
            _restore(target, previous)
            raise
        if summary.skipped:
            item.state = "failed"
            item.error = "; ".join(
                f"{self.library.display_name(s.source)}: {s.reason}" for s in summary.skipped
            )
            if summary.added + summary.updated + summary.unchanged == 0:
                _restore(target, previous)  # the index still holds the earlier version, if any
                return
        else:
            item.state = "done"
        item.documents = summary.added + summary.updated + summary.unchanged
        item.chunks = summary.chunks
        previous.unlink(missing_ok=True)

    def _finish(self, entry: _Entry) -> None:
        job = entry.job
        job.current = None
        job.finished = time.time()
        if job.state != "failed":
            refused = all(f.state == "failed" for f in job.files)
            job.state = "failed" if refused else "done"
            if refused:
                job.error = job.error or "no file could be ingested; each file says why"
        self._save(entry)
        with self._lock:
            self._active.pop(job.id, None)
        shutil.rmtree(self.library.root / "staging" / job.id, ignore_errors=True)


def _fail_rest(job: Job, reason: str) -> None:
    """Mark every file not finished as failed with ``reason``, and the job failed."""
    for item in job.files:
        if item.state in ("queued", "running"):
            item.state, item.error = "failed", reason
            job.done += 1
    job.done = min(job.done, job.total or len(job.files))
    job.state = "failed"
    job.current = None
    job.error = job.error or reason
    job.finished = job.finished or time.time()


def _restore(target: Path, previous: Path) -> None:
    if previous.exists():
        os.replace(previous, target)
    else:
        target.unlink(missing_ok=True)
