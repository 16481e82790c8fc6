"""Schedule math with an injected clock: DST, missed runs, deadlines, @every, seconds, names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice

import pytest

from bullflow.services.cron_schedule import (
    MISSED_RUNS_BOUND,
    ScheduleError,
    due_run,
    flow_name,
    parse_schedule,
    schedule_variables,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def fires(schedule: str, zone: str | None, after: datetime, count: int) -> list[datetime]:
    return list(islice(parse_schedule(schedule, zone).times_after(after), count))


def test_spring_forward_berlin_skipped_time_runs_once_after_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    times = fires("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), 3)
    assert times == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]


def test_fall_back_berlin_repeated_time_runs_once() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice, runs once.
    times = fires("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 2)
    assert times == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_new_york_dst_changes() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    spring = fires("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), 2)
    assert spring == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    fall = fires("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), 2)
    assert fall == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_every_half_hour_follows_real_instants_across_fall_back() -> None:
    times = fires("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 10), 4)
    assert times == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 30),
                     utc(2026, 10, 25, 2)]  # fmt: skip


def test_macros_seconds_field_and_every() -> None:
    assert fires("@daily", None, utc(2026, 1, 1, 5), 1) == [utc(2026, 1, 2)]
    assert fires("@hourly", "UTC", utc(2026, 1, 1, 5, 1), 1) == [utc(2026, 1, 1, 6)]
    assert fires("*/10 * * * * *", None, utc(2026, 1, 1, 0, 0, 3), 2) == [
        utc(2026, 1, 1, 0, 0, 10),
        utc(2026, 1, 1, 0, 0, 20),
    ]
    # @every: multiples of the duration since the epoch, the same for every operator.
    assert fires("@every 5s", None, utc(2026, 1, 1, 0, 0, 3), 2) == [
        utc(2026, 1, 1, 0, 0, 5),
        utc(2026, 1, 1, 0, 0, 10),
    ]
    assert parse_schedule("@every 1h30m").every_seconds == 5400


@pytest.mark.parametrize(
    ("schedule", "zone", "reason"),
    [
        ("61 * * * *", None, "InvalidSchedule"),
        ("* * *", None, "InvalidSchedule"),
        ("@fortnightly", None, "InvalidSchedule"),
        ("@every 0s", None, "InvalidSchedule"),
        ("@every soon", None, "InvalidSchedule"),
        ("0 0 30 2 *", None, "InvalidSchedule"),
        ("@daily", "Mars/Olympus", "UnknownTimeZone"),
        ("@daily", "../etc/passwd", "UnknownTimeZone"),
    ],
)
def test_bad_schedules_and_zones(schedule: str, zone: str | None, reason: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(schedule, zone)
    assert err.value.reason == reason


def test_nothing_due_before_the_first_time() -> None:
    schedule = parse_schedule("@every 10s")
    due = due_run(schedule, last_scheduled=None, created=utc(2026, 1, 1, 0, 0, 1),
                  now=utc(2026, 1, 1, 0, 0, 9), deadline_seconds=None)  # fmt: skip
    assert due.scheduled is None and due.missed == 0
    assert due.next_time == utc(2026, 1, 1, 0, 0, 10)


def test_on_time_run_and_times_before_creation_ignored() -> None:
    schedule = parse_schedule("@every 10s")
    due = due_run(schedule, last_scheduled=None, created=utc(2026, 1, 1, 0, 0, 1),
                  now=utc(2026, 1, 1, 0, 0, 10, 3000), deadline_seconds=None)  # fmt: skip
    assert due.scheduled == utc(2026, 1, 1, 0, 0, 10) and due.missed == 0
    assert due.next_time == utc(2026, 1, 1, 0, 0, 20)


def test_downtime_runs_only_the_latest_and_counts_the_missed() -> None:
    schedule = parse_schedule("*/5 * * * *")
    due = due_run(schedule, last_scheduled=utc(2026, 1, 1, 0, 0), created=utc(2025, 1, 1),
                  now=utc(2026, 1, 1, 0, 17), deadline_seconds=None)  # fmt: skip
    assert due.scheduled == utc(2026, 1, 1, 0, 15)
    assert due.missed == 2 and not due.missed_more


def test_missed_runs_are_counted_up_to_the_bound() -> None:
    schedule = parse_schedule("* * * * *")
    now = utc(2026, 1, 2, 0, 0, 30)
    due = due_run(schedule, last_scheduled=utc(2026, 1, 1), created=utc(2025, 1, 1), now=now,
                  deadline_seconds=None)  # fmt: skip
    assert due.missed_more and due.missed == MISSED_RUNS_BOUND
    assert due.scheduled == utc(2026, 1, 2, 0, 0)  # still the latest


def test_deadline_passed_means_no_run() -> None:
    schedule = parse_schedule("0 * * * *")
    now = utc(2026, 1, 1, 3, 10)
    late = due_run(schedule, last_scheduled=utc(2026, 1, 1, 1), created=utc(2025, 1, 1),
                   now=now, deadline_seconds=300)  # fmt: skip
    assert late.scheduled is None and late.too_late == utc(2026, 1, 1, 3) and late.missed == 1
    in_time = due_run(schedule, last_scheduled=utc(2026, 1, 1, 1), created=utc(2025, 1, 1),
                      now=now, deadline_seconds=900)  # fmt: skip
    assert in_time.scheduled == utc(2026, 1, 1, 3) and in_time.too_late is None


def test_latest_at_or_before() -> None:
    schedule = parse_schedule("*/5 * * * * *")
    assert schedule.latest_at_or_before(utc(2026, 1, 1, 0, 0, 7) + timedelta(microseconds=5)) == (
        utc(2026, 1, 1, 0, 0, 5)
    )
    assert schedule.latest_at_or_before(utc(2026, 1, 1, 0, 0, 5)) == utc(2026, 1, 1, 0, 0, 5)


def test_flow_names_and_variables() -> None:
    scheduled = utc(2026, 3, 28, 23, 30)
    assert flow_name("nightly", scheduled) == f"nightly-{int(scheduled.timestamp())}"
    variables = schedule_variables(scheduled, parse_schedule("@daily", "Europe/Berlin").zone)
    assert variables["time"] == "2026-03-28T23:30:00Z"
    assert variables["date"] == "2026-03-29"  # the date in the CronFlow's zone
    assert variables["unix"] == int(scheduled.timestamp())
