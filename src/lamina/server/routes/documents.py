"""Documents and collections of the caller: upload (an ingest job), list, read a span, delete,
share; ``GET /v1/jobs/{id}`` follows an upload. See :mod:`lamina.server.jobs` and
:mod:`lamina.server.tenancy`."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from lamina.errors import InvalidRequestError
from lamina.server.jobs import Job, JobFile
from lamina.server.library import CollectionInfo, Library
from lamina.server.routes._common import errors, jobs_of, library_of
from lamina.server.routes._deps import admit_key
from lamina.server.tenancy import Tenant, check_collection, tenant_of
from lamina.server.uploads import safe_filename, sniff
from lamina.server.wire import (
    CollectionList,
    CollectionOut,
    Deleted,
    DocumentList,
    DocumentOut,
    DocumentText,
    JobList,
    ShareRequest,
)

router = APIRouter(tags=["documents"])

DocumentId = Annotated[str, PathParam(max_length=64, pattern="^[0-9a-f]{32}$")]
JobId = Annotated[str, PathParam(max_length=64)]


@router.post(
    "/v1/documents",
    summary="Upload files into a collection; they are ingested in the background",
    status_code=202,
    response_model=Job,
    responses=errors(400, 403, 404, 413, 429, 503),
)
async def upload(
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more files (repeat the field).")],
    collection: Annotated[str, Form(max_length=200)] = "default",
    _key: str = Depends(admit_key),
) -> JSONResponse:
    tenant = tenant_of(request)
    library, jobs = library_of(request), jobs_of(request)
    cfg = library.settings.server
    if len(files) > cfg.max_upload_files:
        raise InvalidRequestError(
            f"The upload holds {len(files)} files; at most {cfg.max_upload_files} are accepted "
            f"at once (server.max_upload_files). Send them in several requests."
        )
    if "/" not in collection:
        check_collection(collection)
    stored = await asyncio.to_thread(library.writable, tenant, collection)
    job_id = jobs.new_id()
    folder = library.staging(job_id)
    items: list[JobFile] = []
    staged: list[Path | None] = []
    seen: set[str] = set()
    try:
        for number, upload_file in enumerate(files):
            data = await upload_file.read()
            raw_name = upload_file.filename or ""
            try:
                name = safe_filename(raw_name)
                if name in seen:
                    raise InvalidRequestError(f"{name!r} appears twice in this upload.")
                sniff(name, data)
            except InvalidRequestError as exc:
                items.append(
                    JobFile(name=raw_name[:255], size=len(data), state="failed", error=str(exc))
                )
                staged.append(None)
                continue
            seen.add(name)
            path = folder / str(number)
            await asyncio.to_thread(path.write_bytes, data)
            items.append(JobFile(name=name, size=len(data)))
            staged.append(path)
        if all(s is None for s in staged):
            raise InvalidRequestError(
                "No file of the upload can be ingested: "
                + " ".join(item.error or "" for item in items)
            )
        job = Job(id=job_id, collection=collection, files=items)
        created = jobs.submit(job, tenant, stored, staged)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return JSONResponse(
        created.model_dump(),
        status_code=202,
        headers={"Location": f"/v1/jobs/{job_id}"},
    )


@router.get(
    "/v1/jobs/{job_id}",
    summary="An ingest job: state, progress, per-file errors",
    response_model=Job,
    responses=errors(404),
)
async def get_job(request: Request, job_id: JobId) -> Job:
    return await asyncio.to_thread(jobs_of(request).get, tenant_of(request), job_id)


@router.get(
    "/v1/jobs", summary="Your recent ingest jobs", response_model=JobList, responses=errors()
)
async def list_jobs(request: Request) -> JobList:
    found = await asyncio.to_thread(jobs_of(request).list, tenant_of(request))
    return JobList(data=found)


@router.get(
    "/v1/documents",
    summary="Documents you may read, optionally in one collection",
    response_model=DocumentList,
    responses=errors(400, 404),
)
async def list_documents(
    request: Request, collection: Annotated[str | None, Query(max_length=200)] = None
) -> DocumentList:
    found = await asyncio.to_thread(library_of(request).documents, tenant_of(request), collection)
    return DocumentList(data=[DocumentOut(**vars(d)) for d in found])


@router.get(
    "/v1/documents/{document_id}/text",
    summary="A span of a document's text (what a citation points at), with context",
    response_model=DocumentText,
    responses=errors(400, 404),
)
async def document_text(
    request: Request,
    document_id: DocumentId,
    start: Annotated[int | None, Query(ge=0, le=2**31)] = None,
    end: Annotated[int | None, Query(ge=0, le=2**31)] = None,
    context: Annotated[int, Query(ge=0, le=5000)] = 300,
) -> DocumentText:
    found = await asyncio.to_thread(
        library_of(request).text, tenant_of(request), document_id, start, end, context
    )
    return DocumentText(**found)


@router.delete(
    "/v1/documents/{document_id}",
    summary="Delete one of your documents (and its uploaded file)",
    response_model=Deleted,
    responses=errors(403, 404),
)
async def delete_document(request: Request, document_id: DocumentId) -> Deleted:
    done = await asyncio.to_thread(library_of(request).delete, tenant_of(request), document_id)
    return Deleted(**done)


@router.get(
    "/v1/collections",
    summary="Collections you may read: yours, then those an admin shared",
    response_model=CollectionList,
    responses=errors(),
)
async def list_collections(request: Request) -> CollectionList:
    found = await asyncio.to_thread(library_of(request).collections, tenant_of(request))
    return CollectionList(data=[_collection(c) for c in found])


@router.post(
    "/v1/collections/{name}/share",
    summary="Share one of your collections with every key (admin keys only)",
    response_model=CollectionOut,
    responses=errors(400, 403, 404),
)
async def share_collection(
    request: Request,
    name: Annotated[str, PathParam(max_length=64)],
    body: ShareRequest,
) -> CollectionOut:
    tenant: Tenant = tenant_of(request)
    library: Library = library_of(request)
    check_collection(name)
    info = await asyncio.to_thread(library.share, tenant, name, body.shared)
    return _collection(info)


def _collection(info: CollectionInfo) -> CollectionOut:
    return CollectionOut(
        name=info.name,
        own=info.own,
        shared=info.shared,
        documents=info.documents,
        chunks=info.chunks,
    )
