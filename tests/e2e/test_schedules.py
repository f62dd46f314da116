"""Schedules fired by real reconciler processes: each tick once with two of them running,
catch-up after they were stopped, and daily ticks across the daylight-saving changes of a
real time zone."""

import itertools
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from tests.e2e.conftest import FAST, Stack, wait_until

pytestmark = pytest.mark.e2e

REPORT = {"task": "generate_report", "args": {"format": "json"}}


def _schedule(stack: Stack, name: str, cron: str, **fields: Any) -> dict[str, Any]:
    r = stack.http.post("/schedules", json={"name": name, "cron": cron, **REPORT, **fields})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def _ticks(engine: Engine, name: str) -> list[datetime]:
    """The ticks the schedule's jobs were fired for, in order."""
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT meta->>'scheduled_for' FROM jobs WHERE meta->>'schedule' = :n"),
            {"n": name},
        ).scalars()
        return sorted(datetime.fromisoformat(t) for t in found)


def _every(ticks: list[datetime], seconds: float) -> bool:
    return all((b - a).total_seconds() == seconds for a, b in itertools.pairwise(ticks))


def test_two_reconcilers_fire_each_tick_once(
    make_stack: Callable[..., Stack], sql_engine: Engine
) -> None:
    stack = make_stack(**FAST, JOBS_SCHEDULE_MIN_INTERVAL_S="1")
    _schedule(stack, "every-second", "* * * * * *", catch_up="all")
    stack.reconciler("r1")
    stack.reconciler("r2")

    wait_until(lambda: len(_ticks(sql_engine, "every-second")) >= 6, 30, "six ticks")

    ticks = _ticks(sql_engine, "every-second")
    assert len(set(ticks)) == len(ticks)  # no tick fired twice
    assert _every(ticks, 1)  # and none missed


def test_catch_up_after_the_reconcilers_were_stopped(
    make_stack: Callable[..., Stack], sql_engine: Engine
) -> None:
    stack = make_stack(**FAST, JOBS_SCHEDULE_MIN_INTERVAL_S="1", JOBS_SCHEDULE_GRACE_S="1")
    for policy in ("all", "latest", "none"):
        _schedule(stack, policy, "* * * * * *", catch_up=policy)
    stack.reconciler("r1")
    wait_until(lambda: len(_ticks(sql_engine, "none")) >= 2, 20, "two ticks")

    stack.stop("r1")
    down = datetime.now(UTC)
    time.sleep(4)  # three or four ticks missed
    up = datetime.now(UTC)
    stack.reconciler("r2")
    wait_until(lambda: max(_ticks(sql_engine, "all")) > up, 20, "a tick after the restart")

    ticks = {p: _ticks(sql_engine, p) for p in ("all", "latest", "none")}
    assert len([t for t in ticks["all"] if down < t <= up]) >= 3  # every missed tick
    assert _every(ticks["all"], 1)
    for policy in ("latest", "none"):  # the missed ticks skipped, but (latest) the last one
        after_down = [t for t in ticks[policy] if t > down]
        assert after_down and after_down[0] >= up - timedelta(seconds=1), policy
        assert _every(after_down, 1)


def _expected_daily(first: date, last: date, tz: ZoneInfo) -> list[datetime]:
    """02:30 local each day, or 03:00 where the spring-forward skips 02:30."""
    out = []
    day = first
    while day <= last:
        local = datetime(day.year, day.month, day.day, 2, 30, tzinfo=tz)
        if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
            local = datetime(day.year, day.month, day.day, 3, 0, tzinfo=tz)  # 02:30 never came
        out.append(local.astimezone(UTC))
        day += timedelta(days=1)
    return out


def test_daily_ticks_across_the_daylight_saving_changes_of_a_year(
    make_stack: Callable[..., Stack], sql_engine: Engine
) -> None:
    """A daily 02:30 in Europe/Paris whose reconcilers were down since last March: catch-up
    `all` fires every day once, at 03:00 on the day 02:30 is skipped, once on the day it
    comes twice."""
    stack = make_stack(**FAST)
    made = _schedule(stack, "paris", "30 2 * * *", timezone="Europe/Paris", catch_up="all")
    year = datetime.now(UTC).year - 1
    with sql_engine.begin() as conn:
        conn.execute(
            text("UPDATE schedules SET next_fire_at = :at WHERE id = :id"),
            {"at": datetime(year, 3, 20, tzinfo=UTC), "id": made["id"]},
        )
    stack.reconciler()

    def caught_up() -> bool:
        shown = stack.http.get(f"/schedules/{made['id']}").json()
        return bool(datetime.fromisoformat(shown["next_fire_at"]) > datetime.now(UTC))

    wait_until(caught_up, 60, "every missed day fired")

    ticks = _ticks(sql_engine, "paris")
    paris = ZoneInfo("Europe/Paris")
    assert ticks == _expected_daily(date(year, 3, 20), ticks[-1].astimezone(paris).date(), paris)
    spring = max(d for d in range(25, 32) if date(year, 3, d).weekday() == 6)  # last Sunday
    autumn = max(d for d in range(25, 32) if date(year, 10, d).weekday() == 6)
    assert datetime(year, 3, spring, 1, 0, tzinfo=UTC) in ticks  # 03:00 CEST
    assert [t for t in ticks if t.date() == date(year, 10, autumn)] == [
        datetime(year, 10, autumn, 0, 30, tzinfo=UTC)  # the first 02:30, not the second
    ]
