"""`POST /jobs/cancel` and `POST /jobs/retry`: bulk operations over the jobs `GET /jobs`'
filters select (the work is in `service.bulk`)."""

from fastapi import APIRouter, Request

from service import bulk, bulk_filters, errors, listing
from service.api.deps import ConnDep, LimitedClientDep, RedisDep, SettingsDep
from service.keys import Client
from service.schemas import BulkIn, BulkOut, JobOut, problems

router = APIRouter(prefix="/jobs", tags=["jobs"])

_errors = problems(
    {
        401: "no API key, or not a live one",
        422: "no filter and no `all`, a filter that is not valid here, or a limit over"
        " JOBS_BULK_LIMIT",
        429: "too many requests: wait Retry-After seconds",
        503: "the ledger is unreachable",
    }
)


def _where(body: BulkIn, client: Client) -> listing.ListFilter:
    named = [name for name in bulk_filters.FILTERS if getattr(body, name) is not None]
    if not named and not body.all:
        raise errors.OptionInvalid(
            f"no filter: name at least one ({', '.join(bulk_filters.FILTERS)}),"
            ' or send "all": true to act on every job on purpose'
        )
    if named and body.all:
        raise errors.OptionInvalid(
            f'"all": true selects every job, yet filters are given ({", ".join(named)}):'
            " send one or the other"
        )
    if body.owner is not None and not client.admin:
        raise errors.OptionInvalid("owner is an admin's filter: your jobs are the ones you own")
    return listing.ListFilter(
        owner=body.owner if client.admin else client.name,
        status=body.status,
        task=body.task,
        queue=body.queue,
        created_after=body.created_after,
        created_before=body.created_before,
    )


async def _run(
    action: str,
    body: BulkIn,
    request: Request,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: Client,
) -> BulkOut:
    where = _where(body, client)
    marks = request.app.state.marks
    done = await bulk.run(conn, redis, marks, settings, action, where, body.limit, body.dry_run)
    sample = [JobOut.model_validate(vars(row)) for row in done.pop("sample")]
    return BulkOut(**done, sample=sample)


@router.post("/cancel", response_model=BulkOut, responses=_errors)
async def cancel_many(
    body: BulkIn,
    request: Request,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: LimitedClientDep,
) -> BulkOut:
    """Cancel up to `limit` of the oldest jobs that match the filters and are not final
    (running ones are stopped, as a single cancel stops them); with `dry_run`, only count
    them and show some. Each canceled job's event names the operation."""
    return await _run("cancel", body, request, conn, redis, settings, client)


@router.post("/retry", response_model=BulkOut, responses=_errors)
async def retry_many(
    body: BulkIn,
    request: Request,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: LimitedClientDep,
) -> BulkOut:
    """Queue again up to `limit` of the oldest failed or canceled jobs that match the
    filters (e.g. every job that failed in the last hour); with `dry_run`, only count them
    and show some. Each one's event names the operation."""
    return await _run("retry", body, request, conn, redis, settings, client)
