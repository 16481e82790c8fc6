"""A CronFlow's schedule: parsing, next fire time, missed runs and deadlines. Pure: every
function takes the current time as an argument (the controller's clock is injected).

Syntax (documented for users):

- 5 fields, `minute hour day-of-month month day-of-week`, as in crontab(5), with names (MON,
  JAN), ranges, steps, lists, `L`, `W` and `#`;
- 6 fields: a leading *seconds* field, `second minute hour day-of-month month day-of-week`,
  for sub-minute schedules (`*/10 * * * * *` = every 10 seconds);
- the macros `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`;
- `@every <duration>` (`@every 30s`, `@every 1h30m`; units h, m, s): fire times are the
  multiples of the duration since the Unix epoch, so every operator (and a restarted one)
  computes the same times without any state.

Times are evaluated in `timeZone` (an IANA name, default UTC). Across DST changes a 5-field
schedule with a fixed minute and hour behaves as Debian cron does: a time skipped by
spring-forward runs once at the first valid instant after the gap, and a time repeated by
fall-back runs once (its first occurrence). Schedules with `*` in the minute or hour field run
at each real instant that matches.

cronsim is the parser: maintained (it runs Healthchecks.io's cron monitoring), typed, without
dependencies, with the seconds field, reverse iteration and Debian cron's DST semantics built
in; croniter was declared unmaintained by its author in 2024 and has a history of DST bugs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Kubernetes CronJob stops counting missed schedules at 100; so does bullflow (the Event then
# says "more than 100").
MISSED_RUNS_BOUND = 100
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
INVALID_SCHEDULE = "InvalidSchedule"
UNKNOWN_TIME_ZONE = "UnknownTimeZone"


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; `reason` is the Ready condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: a cron expression (5 or 6 fields) or a fixed interval."""

    text: str
    zone: ZoneInfo
    expression: str | None = None
    every_seconds: int | None = None

    def times_after(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after `after`, ascending, as aware UTC datetimes."""
        if self.every_seconds is not None:
            step = self.every_seconds
            tick = (int(after.timestamp()) // step + 1) * step
            while True:
                yield datetime.fromtimestamp(tick, UTC)
                tick += step
        assert self.expression is not None
        start = after.astimezone(self.zone)
        for local in CronSim(self.expression, start):
            yield local.astimezone(UTC)

    def next_after(self, after: datetime) -> datetime:
        return next(self.times_after(after))

    def latest_at_or_before(self, now: datetime) -> datetime:
        """The last fire time <= now (exists for any schedule cronsim accepts)."""
        if self.every_seconds is not None:
            tick = int(now.timestamp()) // self.every_seconds * self.every_seconds
            return datetime.fromtimestamp(tick, UTC)
        assert self.expression is not None
        start = now.astimezone(self.zone).replace(microsecond=0) + timedelta(seconds=1)
        return next(iter(CronSim(self.expression, start, reverse=True))).astimezone(UTC)


def parse_duration(text: str) -> int:
    """`1h30m`, `45s`, `2m` -> seconds (> 0)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ScheduleError(
            INVALID_SCHEDULE, f"@every needs a duration like 30s, 5m or 1h30m, not {text!r}"
        )
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ScheduleError(INVALID_SCHEDULE, "@every needs a duration of at least 1s")
    return total


def parse_zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            UNKNOWN_TIME_ZONE, f"unknown time zone {name!r}: use an IANA name like Europe/Berlin"
        ) from None


def parse_schedule(text: str, time_zone: str | None = None) -> Schedule:
    zone = parse_zone(time_zone)
    spec = " ".join(text.split())
    if spec.startswith("@every"):
        return Schedule(text, zone, every_seconds=parse_duration(spec[len("@every") :]))
    expression = MACROS.get(spec.lower(), spec)
    if expression.startswith("@"):
        raise ScheduleError(INVALID_SCHEDULE, f"unknown schedule macro {spec!r}")
    if len(expression.split()) not in (5, 6):
        raise ScheduleError(
            INVALID_SCHEDULE,
            f"schedule {spec!r} must have 5 fields (minute hour day month weekday) or 6 "
            "(a leading seconds field)",
        )
    try:
        # Parsed at construction; one step checks that the expression ever matches.
        next(iter(CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))))
    except (CronSimError, StopIteration) as err:
        raise ScheduleError(INVALID_SCHEDULE, f"invalid schedule {spec!r}: {err}") from None
    return Schedule(text, zone, expression=expression)


@dataclass(frozen=True)
class DueRun:
    """What the controller should do now.

    scheduled: the scheduled time to run now (the most recent one passed), or None.
    missed: scheduled times passed without a run before `scheduled` (capped at the bound).
    missed_more: more than MISSED_RUNS_BOUND times were passed.
    too_late: the most recent time passed is older than startingDeadlineSeconds: not run.
    next_time: the first scheduled time after now.
    """

    scheduled: datetime | None
    missed: int
    missed_more: bool
    too_late: datetime | None
    next_time: datetime


def due_run(
    schedule: Schedule,
    *,
    last_scheduled: datetime | None,
    created: datetime,
    now: datetime,
    deadline_seconds: int | None,
) -> DueRun:
    """Kubernetes CronJob's rule: of the times passed since the last scheduled run (or since the
    CronFlow was created), run only the most recent, and only if it is within
    `deadline_seconds` of now; count the others as missed (bounded). Unlike CronJob, times
    older than the deadline are counted too, so that the Event can say what was lost."""
    earliest = last_scheduled or created
    passed = list(islice(_until(schedule.times_after(earliest), now), MISSED_RUNS_BOUND + 1))
    next_time = schedule.next_after(now)
    if not passed:
        return DueRun(None, 0, False, None, next_time)
    more = len(passed) > MISSED_RUNS_BOUND
    latest = schedule.latest_at_or_before(now) if more else passed[-1]
    missed = min(len(passed), MISSED_RUNS_BOUND) - (0 if more else 1)
    if deadline_seconds is not None and latest < now - timedelta(seconds=deadline_seconds):
        return DueRun(None, missed, more, latest, next_time)
    return DueRun(latest, missed, more, None, next_time)


def _until(times: Iterator[datetime], now: datetime) -> Iterator[datetime]:
    for time in times:
        if time > now:
            return
        yield time


def flow_name(cronflow: str, scheduled: datetime) -> str:
    """`<cronflow>-<scheduled time as Unix seconds>`: one name per scheduled time, so that the
    API server's name uniqueness makes a second create (a restart, another operator) a 409."""
    return f"{cronflow}-{int(scheduled.timestamp())}"


def schedule_variables(scheduled: datetime, zone: ZoneInfo) -> dict[str, str | int]:
    """The `${schedule.*}` values for one scheduled time: time (UTC, RFC 3339), date
    (YYYY-MM-DD in the CronFlow's zone), localTime (ISO 8601 with offset), unix (seconds)."""
    local = scheduled.astimezone(zone)
    return {
        "time": scheduled.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "date": local.strftime("%Y-%m-%d"),
        "localTime": local.isoformat(),
        "unix": int(scheduled.timestamp()),
    }
