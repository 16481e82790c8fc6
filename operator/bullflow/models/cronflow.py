"""The CronFlow custom resource: a Flow created on a schedule, with Kubernetes CronJob's
semantics (see services/cron_schedule.py for the schedule syntax)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..services.cron_schedule import ScheduleError, parse_schedule, parse_zone
from .common import CamelModel, Condition
from .flow import FlowSpec

SCHEDULE_DESCRIPTION = (
    "When to run: 5 cron fields (minute hour day-of-month month day-of-week), or 6 with a "
    "leading seconds field, or a macro (@yearly, @monthly, @weekly, @daily, @hourly), or "
    "`@every <duration>` (e.g. @every 30s, @every 1h30m; multiples of the duration since the "
    "Unix epoch)."
)


class FlowTemplateMetadata(CamelModel):
    """Labels and annotations given to every Flow created."""

    labels: dict[str, str] | None = Field(default=None, description="Labels of each Flow.")
    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations of each Flow."
    )


class CronFlowTemplate(CamelModel):
    """The Flow to create at each scheduled time."""

    metadata: FlowTemplateMetadata | None = Field(default=None, description="Flow metadata.")
    spec: FlowSpec = Field(
        description=(
            "A Flow spec: an inline tree (root or roots), or a templateRef with arguments. "
            "${schedule.time} (UTC, RFC 3339), ${schedule.date} (YYYY-MM-DD in timeZone), "
            "${schedule.localTime} and ${schedule.unix} are replaced in its strings."
        )
    )


class CronFlowSpec(CamelModel):
    """A schedule and the Flow to create on it."""

    schedule: str = Field(min_length=1, max_length=200, description=SCHEDULE_DESCRIPTION)
    time_zone: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="IANA time zone the schedule is read in (e.g. Europe/Berlin); default UTC.",
    )
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Allow",
        description=(
            "Allow: runs may overlap. Forbid: skip a run while the previous one is active. "
            "Replace: stop the active run (bullflow.io/stop), then start the new one."
        ),
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        le=31_536_000,
        description="A run not started this long after its scheduled time is skipped.",
    )
    suspend: bool = Field(default=False, description="No new runs while true.")
    successful_flows_history_limit: int = Field(
        default=3, ge=0, le=1000, description="Completed Flows to keep."
    )
    failed_flows_history_limit: int = Field(
        default=1, ge=0, le=1000, description="Failed or Stopped Flows to keep."
    )
    flow_template: CronFlowTemplate = Field(description="The Flow created at each run.")

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        try:
            parse_schedule(value)
        except ScheduleError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("time_zone")
    @classmethod
    def _valid_zone(cls, value: str | None) -> str | None:
        try:
            parse_zone(value)
        except ScheduleError as err:
            raise ValueError(str(err)) from None
        return value


class FlowRef(CamelModel):
    """A Flow of this CronFlow."""

    name: str
    uid: str | None = None


class CronFlowStatus(CamelModel):
    """Written only by the operator, through the status subresource."""

    active: list[FlowRef] | None = Field(default=None, description="Runs not ended yet.")
    active_count: int | None = Field(default=None, description="How many runs are active.")
    last_schedule_time: str | None = Field(
        default=None, description="The scheduled time of the last run created."
    )
    last_successful_time: str | None = Field(
        default=None, description="When the last Completed run finished."
    )
    last_skipped_time: str | None = Field(
        default=None,
        description="The last scheduled time not run (concurrencyPolicy Forbid, or too late).",
    )
    next_schedule_time: str | None = Field(default=None, description="The next scheduled time.")
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
