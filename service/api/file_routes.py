"""Files: uploads a task will read (`POST /jobs/uploads`) and artifacts a job made
(`GET /jobs/{id}/artifact`, `GET /jobs/{id}/artifacts/{name}`)."""

import hashlib
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from service import errors, ledger, storage
from service.api.deps import ClientDep, ConnDep, LimitedClientDep, SettingsDep
from service.schemas import UploadOut, problems
from service.settings import Settings
from service.tables import Status

router = APIRouter(prefix="/jobs", tags=["files"])

UPLOADS = "/jobs/uploads"
_ERRORS = problems(
    {401: "no API key, or not a live one", 404: "no such job, or no such artifact yet"}
)


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadOut,
    responses=problems(
        {
            401: "no API key, or not a live one",
            408: "the upload did not arrive within JOBS_BODY_TIMEOUT_S",
            413: "the upload is over JOBS_MAX_UPLOAD_BYTES, or your uploads over"
            " JOBS_UPLOAD_QUOTA_BYTES",
            429: "too many requests: wait Retry-After seconds",
            422: "an empty upload",
        }
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    request: Request,
    client: LimitedClientDep,
    settings: SettingsDep,
    content_type: Annotated[str, Header()] = "application/octet-stream",
) -> UploadOut:
    """Store the raw request body for a later job (e.g. `make_thumbnails`); only your jobs
    can read it. Up to JOBS_MAX_UPLOAD_BYTES each, JOBS_UPLOAD_QUOTA_BYTES in all (413
    above either). The body goes to disk as it arrives."""
    folder = storage.uploads_dir(settings.artifacts_dir, client.name)
    room = settings.upload_quota_bytes - await run_in_threadpool(storage.bytes_used, folder)
    upload_id = uuid4()
    digest = hashlib.sha256()
    size = 0
    with storage.WholeFile(folder / str(upload_id)) as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > room:
                raise errors.UploadQuotaExceeded(settings.upload_quota_bytes)
            digest.update(chunk)
            await run_in_threadpool(out.write, chunk)
        if size == 0:
            raise errors.OptionInvalid("the upload is empty: send the file as the request body")
        await run_in_threadpool(out.keep)
    return UploadOut(
        upload_id=upload_id, size=size, sha256=digest.hexdigest(), content_type=content_type
    )


@router.get("/{job_id}/artifact", response_class=FileResponse, responses=_ERRORS)
async def artifact(
    job_id: UUID, conn: ConnDep, client: ClientDep, settings: SettingsDep
) -> FileResponse:
    """The file the job made (its first, if it made several); 404 until it has finished."""
    files = await _artifacts(conn, job_id, client.owner_filter)
    return _file(job_id, files[0], settings)


@router.get("/{job_id}/artifacts/{name}", response_class=FileResponse, responses=_ERRORS)
async def named_artifact(
    job_id: UUID,
    name: Annotated[str, PathParam(max_length=128)],
    conn: ConnDep,
    client: ClientDep,
    settings: SettingsDep,
) -> FileResponse:
    """One of the files the job made, by name (see the job's `result.artifacts`)."""
    files = await _artifacts(conn, job_id, client.owner_filter)
    for info in files:
        if info.get("name") == name:
            return _file(job_id, info, settings)
    raise errors.ArtifactMissing(job_id, f"no artifact named {name!r}")


async def _artifacts(
    conn: AsyncConnection, job_id: UUID, owner: str | None
) -> list[dict[str, Any]]:
    row = await ledger.get(conn, job_id, owner)
    if row.status != Status.FINISHED:
        raise errors.ArtifactMissing(job_id, f"the job is {row.status}, not finished")
    result = row.result
    files = result.get("artifacts") if isinstance(result, dict) else None
    if not files:
        raise errors.ArtifactMissing(job_id, "the job made no artifact")
    return list(files)


def _file(job_id: UUID, info: dict[str, Any], settings: Settings) -> FileResponse:
    path = storage.artifact_dir(settings.artifacts_dir, job_id) / str(info["name"])
    if not storage.is_safe_name(str(info["name"])) or not path.is_file():
        raise errors.ArtifactMissing(job_id, "its file is gone (cleaned up?)")
    return FileResponse(path, media_type=info.get("content_type"), filename=str(info["name"]))
