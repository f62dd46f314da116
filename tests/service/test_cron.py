"""Cron arithmetic with a fixed clock: ticks across real daylight-saving changes, and what
each catch_up policy fires after downtime."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from service import cron, errors


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_a_daily_time_skipped_by_spring_forward_fires_at_the_first_minute_after() -> None:
    # Europe/Paris moves 02:00 → 03:00 on 2026-03-29: 02:30 does not exist that day.
    ticks = cron.upcoming("30 2 * * *", "Europe/Paris", utc(2026, 3, 27, 12), 3)

    assert ticks == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: the first minute after the gap
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_daily_time_repeated_by_fall_back_fires_once() -> None:
    # On 2026-10-25 Paris goes 03:00 CEST → 02:00 CET: 02:30 happens twice.
    ticks = cron.upcoming("30 2 * * *", "Europe/Paris", utc(2026, 10, 24, 12), 2)

    assert ticks == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_an_hourly_schedule_fires_every_real_hour_across_fall_back() -> None:
    ticks = cron.upcoming("0 * * * *", "Europe/Paris", utc(2026, 10, 24, 21, 30), 26)

    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(ticks))
    local_day = [t for t in ticks if t.astimezone(cron.zone("Europe/Paris")).day == 25]
    assert len(local_day) == 25  # the long day has 25 hours


def test_new_york_spring_forward() -> None:
    # America/New_York skips 02:00-03:00 on 2026-03-08.
    [tick] = cron.upcoming("15 2 8 3 *", "America/New_York", utc(2026, 3, 1), 1)

    assert tick == utc(2026, 3, 8, 7, 0)  # 03:00 EDT


def test_catch_up_all_fires_every_missed_tick_in_bounded_passes() -> None:
    start, now = utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 25, 30)

    fires, next_at = cron.due("*/10 * * * *", "UTC", start, now, "all", 60, most=2)
    assert fires == [utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 10)]
    assert next_at == utc(2026, 1, 1, 0, 20)  # still due: the next pass fires it

    fires, next_at = cron.due("*/10 * * * *", "UTC", next_at, now, "all", 60, most=2)
    assert fires == [utc(2026, 1, 1, 0, 20)] and next_at == utc(2026, 1, 1, 0, 30)


def test_catch_up_latest_fires_one_tick_however_many_were_missed() -> None:
    fires, next_at = cron.due(
        "0 * * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 3, 5, 30), "latest", 60, most=100
    )

    assert fires == [utc(2026, 1, 3, 5)] and next_at == utc(2026, 1, 3, 6)


def test_catch_up_none_skips_what_is_over_the_grace() -> None:
    late = cron.due(
        "0 * * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 3, 5, 30), "none", 60, most=100
    )
    on_time = cron.due(
        "0 * * * *", "UTC", utc(2026, 1, 3, 5), utc(2026, 1, 3, 5, 0, 2), "none", 60, most=100
    )

    assert late == ([], utc(2026, 1, 3, 6))
    just_over = cron.due(
        "* * * * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 9, 900_000), "none", 2, 100
    )
    assert just_over[0] == [utc(2026, 1, 1, 0, 0, 8), utc(2026, 1, 1, 0, 0, 9)]  # not 7: 2.9 s
    assert on_time == ([utc(2026, 1, 3, 5)], utc(2026, 1, 3, 6))


def test_nothing_is_due_before_the_next_tick() -> None:
    for policy in cron.CATCH_UP:
        fires, next_at = cron.due(
            "0 * * * *", "UTC", utc(2026, 1, 1, 1), utc(2026, 1, 1, 0, 59), policy, 60, most=100
        )
        assert fires == [] and next_at == utc(2026, 1, 1, 1)


@pytest.mark.parametrize(
    ("expr", "tz", "needle"),
    [
        ("0 3 * *", "UTC", "has 4 fields"),
        ("0 25 * * *", "UTC", "is not valid"),
        ("0 3 31 2 *", "UTC", "is not valid"),
        ("0 3 * * *", "Mars/Olympus", "not an IANA time zone"),
        ("* * * * *", "UTC", "more often than the minimum of 120 s"),
    ],
)
def test_bad_schedules_are_refused_with_a_reason(expr: str, tz: str, needle: str) -> None:
    with pytest.raises(errors.OptionInvalid, match=needle):
        cron.check(expr, tz, 120, utc(2026, 1, 1))
