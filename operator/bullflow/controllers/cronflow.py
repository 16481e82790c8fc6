"""CronFlow reconciliation: create a Flow at each scheduled time (Kubernetes CronJob's rules).

One idempotent `reconcile` per CronFlow event or timer: validate the schedule, decide from the
clock and the status what is due (services/cron_schedule.py, pure), apply the concurrency policy
to the CronFlow's Flows (services/cronflow_policy.py, pure), create the Flow, prune history,
write the status, and arm ONE timer (loop.call_at) for the next scheduled time, so an idle
CronFlow costs a timer handle and nothing else. The Flow's name is derived from the scheduled
time: a second create of the same run (a restart, another operator) is a 409 and changes
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from .. import GROUP, VERSION
from ..logs import about
from ..models.cronflow import CronFlowSpec, CronFlowStatus, FlowRef
from ..services.conditions import set_condition
from ..services.cron_schedule import (
    DueRun,
    Schedule,
    ScheduleError,
    due_run,
    flow_name,
    parse_schedule,
    schedule_variables,
)
from ..services.cronflow_policy import (
    build_flow,
    concurrency_action,
    history_to_prune,
    is_active,
    last_successful_time,
)
from ..services.template_expansion import PlaceholderError
from ..storage.kube import KubeApi, ObjectRef, describe_api_error
from .cronflow_runs import CronFlowRuns
from .flow import format_validation_error

log = logging.getLogger(__name__)
# A timer may fire a little before its time (the loop's clock resolution); the margin keeps the
# reconcile from finding nothing due and re-arming for the same instant.
TIMER_MARGIN_SECONDS = 0.005
# With the Flow name <cronflow>-<10 digits>, a longer CronFlow name would make a Flow name or
# label value beyond Kubernetes' 63 characters (CronJob has the same limit, 52).
MAX_NAME_LENGTH = 52
# After a failed API call (the API server away, a refused write) the CronFlow is read and
# reconciled again this much later; events and its timer may come sooner.
RETRY_SECONDS = 5.0
Clock = Callable[[], datetime]


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _stamp(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


class CronFlowController:
    def __init__(self, kube: KubeApi, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.runs = CronFlowRuns(kube)
        self.clock = clock
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._waking: set[tuple[str, str]] = set()
        self._retries: dict[tuple[str, str], asyncio.TimerHandle] = {}

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        try:
            async with self._locks.setdefault(meta["uid"], asyncio.Lock()):
                await self._reconcile(body)
        except ApiException as err:
            # An event handler is not retried by kopf: the controller tries again itself.
            log.warning(
                "cronflow: %s",
                describe_api_error(err),
                extra=about(meta["namespace"], meta["name"]),
            )
            self._arm_retry(meta["namespace"], meta["name"])

    def forget(self, uid: str) -> None:
        """The CronFlow is gone: no timer, no lock."""
        timer = self._timers.pop(uid, None)
        if timer is not None:
            timer.cancel()
        self._locks.pop(uid, None)

    def wake(self, namespace: str, name: str) -> None:
        """Reconcile the CronFlow as it is now in the API (a timer, or one of its Flows ended);
        wake-ups that come while one waits to run are one."""
        if (namespace, name) in self._waking:
            return
        self._waking.add((namespace, name))
        task = asyncio.create_task(self._reread(namespace, name), name=f"cronflow:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for timer in [*self._timers.values(), *self._retries.values()]:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    async def _reread(self, namespace: str, name: str) -> None:
        self._waking.discard((namespace, name))
        try:
            body = await self.kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "cronflows", name
            )
        except ApiException as err:
            if err.status != 404:
                log.warning("cronflow: %s", describe_api_error(err), extra=about(namespace, name))
                self._arm_retry(namespace, name)
            return
        await self.reconcile(body)

    def _arm_retry(self, namespace: str, name: str) -> None:
        """One retry in RETRY_SECONDS (several failures meanwhile make one)."""
        key = (namespace, name)
        if key in self._retries:
            return

        def retry() -> None:
            self._retries.pop(key, None)
            self.wake(namespace, name)

        self._retries[key] = asyncio.get_running_loop().call_later(RETRY_SECONDS, retry)

    def _arm(self, ref: ObjectRef, at: datetime | None) -> None:
        timer = self._timers.pop(ref.uid, None)
        if timer is not None:
            timer.cancel()
        if at is None:
            return
        loop = asyncio.get_running_loop()
        delay = (at - self.clock()).total_seconds() + TIMER_MARGIN_SECONDS
        self._timers[ref.uid] = loop.call_at(
            loop.time() + max(delay, 0.0), self.wake, ref.namespace, ref.name
        )

    async def _reconcile(self, body: Mapping[str, Any]) -> None:
        """Validate, decide, act, record, re-arm.

        Long because: the one story of a CronFlow turn; each step is a call.
        """
        meta = body["metadata"]
        ref = ObjectRef("CronFlow", "cronflows", meta["namespace"], meta["name"], meta["uid"])
        if meta.get("deletionTimestamp"):
            self.forget(ref.uid)
            return
        old = _status(body)
        status = old.model_copy(deep=True)
        generation = meta.get("generation")
        problem = _invalid(body)
        if isinstance(problem, Problem):
            reason, message = problem.reason, problem.message
            status.conditions = set_condition(status.conditions, "Ready", False, reason, message)
            status.next_schedule_time = None
            await self._write(ref, old, status)
            self._arm(ref, None)
            return
        schedule, spec = problem
        now = self.clock()
        skipped = _time(status.last_skipped_time)
        last = max(filter(None, [_time(status.last_schedule_time), skipped]), default=None)
        due = due_run(
            schedule,
            last_scheduled=last,
            created=_time(meta["creationTimestamp"]) or now,
            now=now,
            deadline_seconds=spec.starting_deadline_seconds,
        )
        # Allow needs no look at the runs before creating one: the run is created first (on
        # time), the runs are listed after it for the status and the history.
        create_first = not spec.suspend and due.scheduled and spec.concurrency_policy == "Allow"
        flows = [] if create_first else await self.runs.list(ref)
        active = [f for f in flows if is_active(f)]
        ready = (True, "Suspended" if spec.suspend else "Scheduled", "")
        if not spec.suspend:
            ready = await self._run_due(ref, body, spec, schedule, due, active, status)
        if create_first:
            flows = await self.runs.list(ref)
            active = [f for f in flows if is_active(f)]
        for name in history_to_prune(
            flows, spec.successful_flows_history_limit, spec.failed_flows_history_limit
        ):
            await self.runs.delete(ref, name)
        status.active = [
            FlowRef(name=f["metadata"]["name"], uid=f["metadata"]["uid"]) for f in active
        ]
        status.active_count = len(active)
        status.last_successful_time = last_successful_time(flows, status.last_successful_time)
        status.next_schedule_time = None if spec.suspend else _stamp(due.next_time)
        status.observed_generation = generation
        status.conditions = set_condition(status.conditions, "Ready", *ready, generation)
        await self._write(ref, old, status)
        self._arm(ref, None if spec.suspend else due.next_time)

    async def _run_due(
        self,
        ref: ObjectRef,
        body: Mapping[str, Any],
        spec: CronFlowSpec,
        schedule: Schedule,
        due: DueRun,
        active: list[dict[str, Any]],
        status: CronFlowStatus,
    ) -> tuple[bool, str, str]:
        """Start the due run (if any) under the concurrency policy; the Ready condition."""
        missed = f"more than {due.missed}" if due.missed_more else str(due.missed)
        if due.too_late is not None:
            status.last_skipped_time = _stamp(due.too_late)
            message = (
                f"missed {missed} earlier run(s); the latest, {_stamp(due.too_late)}, is past "
                f"startingDeadlineSeconds ({spec.starting_deadline_seconds}): not run"
            )
            await self.kube.event(ref, "Warning", "MissedSchedule", message)
            return True, "Scheduled", ""
        if due.scheduled is None:
            return True, "Scheduled", ""
        template = (body["spec"]["flowTemplate"]["spec"] or {}).get("templateRef")
        if template and not await self.runs.template_exists(ref.namespace, template["name"]):
            return False, "TemplateNotFound", f"FlowTemplate {template['name']!r} not found"
        action = concurrency_action(spec.concurrency_policy, active)
        if action == "skip":
            status.last_skipped_time = _stamp(due.scheduled)
            names = ", ".join(f["metadata"]["name"] for f in active)
            await self.kube.event(
                ref,
                "Normal",
                "RunSkipped",
                f"run of {_stamp(due.scheduled)} skipped: concurrencyPolicy Forbid and {names} "
                "still active",
            )
            return True, "Scheduled", ""
        if action == "replace":
            for flow in active:
                await self.runs.replace(ref, flow, due.scheduled)
            active.clear()
        variables = schedule_variables(due.scheduled, schedule.zone)
        name = flow_name(ref.name, due.scheduled)
        try:
            flow = build_flow(dict(body), name, variables)
        except PlaceholderError as err:
            return False, "InvalidSpec", str(err)
        created = await self.runs.create(ref, flow)
        status.last_schedule_time = _stamp(due.scheduled)
        if created is not None:
            active.append(created)
            if due.missed:
                message = f"missed {missed} run(s) before {_stamp(due.scheduled)}; ran the latest"
                await self.kube.event(ref, "Warning", "MissedSchedules", message)
            await self.kube.event(ref, "Normal", "Created", f"created Flow {name}")
        return True, "Scheduled", ""

    async def _write(self, ref: ObjectRef, old: CronFlowStatus, new: CronFlowStatus) -> None:
        if new != old:
            await self.kube.patch_status(ref, new.to_wire())


def _status(body: Mapping[str, Any]) -> CronFlowStatus:
    try:
        return CronFlowStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return CronFlowStatus()


@dataclass(frozen=True)
class Problem:
    """What makes a CronFlow unusable: the Ready condition's reason and message."""

    reason: str
    message: str


def _invalid(body: Mapping[str, Any]) -> Problem | tuple[Schedule, CronFlowSpec]:
    """The problem of the CronFlow, else its (schedule, spec)."""
    spec = body.get("spec") or {}
    if len(body["metadata"]["name"]) > MAX_NAME_LENGTH:
        return Problem("NameTooLong", f"a CronFlow's name has at most {MAX_NAME_LENGTH} characters")
    try:
        schedule = parse_schedule(str(spec.get("schedule", "")), spec.get("timeZone"))
        return schedule, CronFlowSpec.model_validate(spec)
    except ScheduleError as err:
        return Problem(err.reason, str(err))
    except ValidationError as err:
        return Problem("InvalidSpec", format_validation_error(err))
