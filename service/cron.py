"""When a cron expression fires, in its time zone: the arithmetic of schedules, with no
clock of its own (every "now" is passed in: the database's, architecture.md "One clock").

Expressions have five fields (minute hour day month weekday), or six with seconds first.
Ticks follow Debian cron's rules across daylight-saving changes (cronsim): a time that a
spring-forward skips fires at the first minute after it (02:30 → 03:00 that day); a time
that a fall-back repeats fires once; an expression with a wildcard minute or hour fires
every real minute or hour. Ticks are returned in UTC.
"""

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from service import errors

CATCH_UP = ("latest", "all", "none")
_ONE_SECOND = timedelta(seconds=1)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (OptionInvalid if there is none)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
        raise errors.OptionInvalid(
            f"timezone {name[:100]!r} is not an IANA time zone name (e.g. Europe/Paris, UTC)"
        ) from None


def check(expr: str, tz: str, min_interval_s: float, now: datetime) -> None:
    """OptionInvalid unless `expr` is a cron expression in zone `tz` that fires at all, and
    not more often than every `min_interval_s` seconds."""
    fields = len(expr.split())
    if fields not in (5, 6):
        raise errors.OptionInvalid(
            f"cron {expr[:200]!r} has {fields} fields: give 5 (minute hour day month weekday)"
            " or 6 (seconds first)"
        )
    try:
        first = upcoming(expr, tz, now, 10)
    except (CronSimError, StopIteration) as exc:
        raise errors.OptionInvalid(f"cron {expr[:200]!r} is not valid: {exc}") from None
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(first)]
    if gaps and min(gaps) < min_interval_s:
        raise errors.OptionInvalid(
            f"cron {expr[:200]!r} fires every {min(gaps):g} s at times, more often than the"
            f" minimum of {min_interval_s:g} s (JOBS_SCHEDULE_MIN_INTERVAL_S)"
        )


def explain(expr: str) -> str | None:
    """The expression in words ("At 03:00 every day"), if cronsim can say it."""
    try:
        return CronSim(expr, datetime.now(UTC)).explain()
    except Exception:  # a description is a courtesy
        return None


def _after(expr: str, tz: str, moment: datetime) -> Iterator[datetime]:
    """The ticks strictly after `moment` (whole seconds), in UTC."""
    local = moment.astimezone(zone(tz)).replace(microsecond=0)
    for tick in CronSim(expr, local):
        yield tick.astimezone(UTC)


def upcoming(expr: str, tz: str, now: datetime, n: int) -> list[datetime]:
    """The next `n` ticks after `now`."""
    ticks = _after(expr, tz, now)
    return [next(ticks) for _ in range(n)]


def latest(expr: str, tz: str, now: datetime) -> datetime:
    """The last tick at or before `now`."""
    local = now.astimezone(zone(tz)).replace(microsecond=0) + _ONE_SECOND
    return next(iter(CronSim(expr, local, reverse=True))).astimezone(UTC)


def due(
    expr: str,
    tz: str,
    next_fire_at: datetime,
    now: datetime,
    catch_up: str,
    grace_s: float,
    most: int,
) -> tuple[list[datetime], datetime]:
    """The ticks to fire now, of a schedule whose first unfired tick is `next_fire_at`, and
    its first unfired tick after that:

    - `all`: every tick from `next_fire_at` to `now` (at most `most`; the rest are still
      due, for the next call);
    - `latest`: the last tick at or before `now`, however many were missed;
    - `none`: the ticks no more than `grace_s` late (a tick missed longer ago is skipped).
    """
    if catch_up == "latest":
        last = latest(expr, tz, now)
        return ([last] if last >= next_fire_at else []), next(_after(expr, tz, now))
    start = (
        next_fire_at if catch_up == "all" else max(next_fire_at, now - timedelta(seconds=grace_s))
    )
    fires: list[datetime] = []
    for tick in _after(expr, tz, start - _ONE_SECOND):  # whole seconds: from `start`'s own
        if tick > now or len(fires) == most:
            return fires, tick
        if tick >= start:
            fires.append(tick)
    raise AssertionError("a cron expression's ticks do not end")  # pragma: no cover
