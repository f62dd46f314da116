"""`/queues`: each queue's state for operators, and pausing it (admin keys only; the work
is in `service.queues`)."""

from fastapi import APIRouter, Request

from service import queues, submit
from service.api.deps import AdminDep, ConnDep, RedisDep, SettingsDep
from service.keys import Client
from service.schemas import QueueOut, problems

router = APIRouter(prefix="/queues", tags=["queues"])

_errors = problems(
    {
        401: "no API key, or not a live one",
        403: "not an admin key",
        503: "the ledger is unreachable",
    }
)


@router.get("", response_model=list[QueueOut], responses=_errors)
async def list_queues(conn: ConnDep, redis: RedisDep, client: AdminDep) -> list[QueueOut]:
    """Every queue: jobs waiting (due) and the oldest one's wait, jobs running, paused or
    not, its depth in Redis and the workers listening on it."""
    return [QueueOut(**q) for q in await queues.overview(conn, redis)]


async def _set(
    request: Request,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: Client,
    name: str,
    paused: bool,
) -> QueueOut:
    _, released = await queues.set_paused(conn, name, paused, client.name)
    if released:  # jobs a worker popped as the pause landed, back to their queue
        await submit.hand_over(redis, request.app.state.marks, settings, released)
    [found] = [q for q in await queues.overview(conn, redis) if q["name"] == name]
    return QueueOut(**found)


_SET_ERRORS = {**_errors, **problems({404: "no such queue"})}


@router.post("/{name}/pause", response_model=QueueOut, responses=_SET_ERRORS)
async def pause(
    name: str,
    request: Request,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: AdminDep,
) -> QueueOut:
    """Workers stop claiming jobs of this queue and leave them queued, until it is resumed
    (the state is in the ledger: it survives restarts). A job already running goes on."""
    return await _set(request, conn, redis, settings, client, name, True)


@router.post("/{name}/resume", response_model=QueueOut, responses=_SET_ERRORS)
async def resume(
    name: str,
    request: Request,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: AdminDep,
) -> QueueOut:
    """Workers take this queue's jobs again (within a few seconds), those a worker popped
    as the pause landed included."""
    return await _set(request, conn, redis, settings, client, name, False)
