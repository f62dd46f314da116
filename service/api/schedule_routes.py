"""`/schedules`: a client's cron schedules (HTTP in and out; the work is in
`service.schedules`, the tick arithmetic in `service.cron`)."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from service import cron, schedules
from service.api.deps import ClientDep, ConnDep, SettingsDep
from service.rows import ScheduleRow
from service.schedule_schemas import ScheduleIn, ScheduleOut, SchedulePatch
from service.schemas import problems

router = APIRouter(prefix="/schedules", tags=["schedules"])

_errors = problems(
    {
        401: "no API key, or not a live one",
        404: "no such schedule (or not yours)",
        422: "a field that is not valid: the cron, the time zone, the task or its args",
        503: "the ledger is unreachable",
    }
)
_NAME_TAKEN = problems({409: "you have a schedule of that name already"})


async def _out(conn: AsyncConnection, row: ScheduleRow, *, detail: bool) -> ScheduleOut:
    """The schedule; with `detail`, its next ticks and its newest jobs too."""
    out: dict[str, Any] = {**vars(row), "description": cron.explain(row.cron)}
    if detail:
        if not row.paused:  # the first unfired tick, and the four after it
            after = cron.upcoming(row.cron, row.timezone, row.next_fire_at, 4)
            out["next_fires"] = [row.next_fire_at, *after]
        out["last_jobs"] = await schedules.recent_jobs(conn, row)
    return ScheduleOut.model_validate(out)


@router.post("", status_code=201, response_model=ScheduleOut, responses={**_errors, **_NAME_TAKEN})
async def create_schedule(
    body: ScheduleIn, response: Response, conn: ConnDep, settings: SettingsDep, client: ClientDep
) -> ScheduleOut:
    """A new schedule of yours: from its next tick on, the reconciler submits a job of
    `task` with `args` at each tick of `cron` in `timezone`, as your job."""
    row = await schedules.create(conn, body.model_dump(), settings, client.name)
    response.headers["Location"] = f"/schedules/{row.id}"
    return await _out(conn, row, detail=True)


@router.get("", response_model=list[ScheduleOut], responses=_errors)
async def list_schedules(conn: ConnDep, client: ClientDep) -> list[ScheduleOut]:
    """Your schedules by name (an admin's: everyone's, the system's included)."""
    rows = await schedules.listed(conn, client.owner_filter)
    return [await _out(conn, row, detail=False) for row in rows]


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=_errors)
async def get_schedule(schedule_id: UUID, conn: ConnDep, client: ClientDep) -> ScheduleOut:
    """The schedule, its next five ticks and the newest jobs it fired."""
    row = await schedules.get(conn, schedule_id, client.owner_filter)
    return await _out(conn, row, detail=True)


@router.patch("/{schedule_id}", response_model=ScheduleOut, responses={**_errors, **_NAME_TAKEN})
async def change_schedule(
    schedule_id: UUID,
    body: SchedulePatch,
    conn: ConnDep,
    settings: SettingsDep,
    client: ClientDep,
) -> ScheduleOut:
    """Change some of its fields (`{"paused": true}` pauses it). A new cron or time zone,
    or a resume, starts from the next tick after now."""
    changes = body.model_dump(exclude_unset=True)
    row = await schedules.change(conn, schedule_id, client.owner_filter, changes, settings)
    return await _out(conn, row, detail=True)


@router.delete("/{schedule_id}", status_code=204, responses=_errors)
async def delete_schedule(schedule_id: UUID, conn: ConnDep, client: ClientDep) -> Response:
    """Delete the schedule; the jobs it fired stay."""
    await schedules.delete(conn, schedule_id, client.owner_filter)
    return Response(status_code=204)
