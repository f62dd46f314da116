"""`/rate-limits`: the shared limiters of resources, and setting their rates (admin keys
only; the work is in `service.limiters`)."""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from service import limiters
from service.api.deps import AdminDep, ConnDep, SettingsDep
from service.schemas import LimiterIn, LimiterOut, problems
from service.settings import LIMITER_NAME, per_second

router = APIRouter(prefix="/rate-limits", tags=["rate limits"])

_errors = problems(
    {
        401: "no API key, or not a live one",
        403: "not an admin key",
        503: "the ledger is unreachable",
    }
)
_CHANGE_ERRORS = {**_errors, **problems({409: "declared in JOBS_RATE_LIMITS: change it there"})}

NameParam = Annotated[str, Path(pattern=f"^{LIMITER_NAME.pattern}$", examples=["smtp"])]


@router.get("", response_model=list[LimiterOut], responses=_errors)
async def list_limiters(conn: ConnDep, client: AdminDep) -> list[LimiterOut]:
    """Every limiter: its rate, when its next job may start, its last back-off, and how
    many jobs it started and throttled."""
    return [LimiterOut(**vars(found)) for found in await limiters.all_limiters(conn)]


@router.put("/{name}", response_model=LimiterOut, responses=_CHANGE_ERRORS)
async def set_limiter(
    name: NameParam, body: LimiterIn, conn: ConnDep, client: AdminDep, settings: SettingsDep
) -> LimiterOut:
    """Set a limiter's rate (made if new): its jobs start at most that often, across every
    worker, from the next start on."""
    per_s = None if body.rate is None else per_second(body.rate)
    found = await limiters.set_rate(conn, name, per_s, client.name, settings)
    return LimiterOut(**vars(found))


@router.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    responses={**_CHANGE_ERRORS, **problems({404: "no such limiter"})},
)
async def delete_limiter(
    name: NameParam, conn: ConnDep, client: AdminDep, settings: SettingsDep
) -> None:
    """Forget a limiter: its jobs start as fast as workers take them, until a rate is set
    again or a job is told to slow down."""
    await limiters.remove(conn, name, settings)
