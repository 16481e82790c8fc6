"""The status a retry or stop request leaves (applied, refused, waiting for Redis). Pure."""

from __future__ import annotations

from ..models.flow import FlowStatus, RetryRecord
from .conditions import set_condition
from .flowstatus import StopNote, plural

MAX_RETRY_RECORDS = 20
# The status field recording each kind of request handled.
HANDLED_FIELDS = {"retry": "lastHandledRetry", "stop": "lastHandledStop"}


def predates_handled(handled: dict[str, str], wire_status: dict | None) -> bool:
    """A Flow body (its status as the API returned it) older than the status write recording a
    request this process handled (kind -> token). Its phase and status are out of date:
    following the flow from it would write that old status back over the newer one, losing
    what the request recorded (the next event brings the newer body)."""
    shown = wire_status or {}
    return any(token != shown.get(HANDLED_FIELDS[kind]) for kind, token in handled.items())


def retried(
    status: FlowStatus, record: RetryRecord, generation: int | None, now: str
) -> FlowStatus:
    """A retry just applied: the flow runs again (Running until the tracker reads the jobs)."""
    status = status.model_copy(deep=True)
    status.retries = [*(status.retries or []), record][-MAX_RETRY_RECORDS:]
    status.retry_count = (status.retry_count or 0) + 1
    status.last_handled_retry = record.value
    status.phase = "Running"
    status.finished_at = None
    shown = ", ".join(record.nodes[:10]) + (
        f" and {len(record.nodes) - 10} more" if len(record.nodes) > 10 else ""
    )
    message = f"retry {record.value!r}: {plural(len(record.nodes), 'job')} run again ({shown})" + (
        "; attempts reset" if record.reset_attempts else ""
    )
    conds = set_condition(status.conditions, "Retried", True, "Retried", message, generation, now)
    for type_ in ("Failed", "Completed", "Stopped"):
        if any(c.type == type_ for c in conds):
            conds = set_condition(conds, type_, False, "Retried", message, generation, now)
    status.conditions = set_condition(conds, "Ready", False, "Retried", message, generation, now)
    return status


def retry_refused(
    status: FlowStatus,
    token: str,
    message: str,
    generation: int | None,
    reason: str = "RetryRefused",
) -> FlowStatus:
    """A retry that is not applied and never will be (this token)."""
    status = status.model_copy(deep=True)
    status.last_handled_retry = token
    status.conditions = set_condition(
        status.conditions,
        "Retried",
        False,
        reason,
        f"retry {token!r} refused: {message}",
        generation,
    )
    return status


def operation_pending(
    status: FlowStatus, kind: str, token: str, message: str, generation: int | None
) -> FlowStatus:
    """A retry or stop waiting for Redis: not handled yet, applied once Redis answers."""
    status = status.model_copy(deep=True)
    type_ = "Retried" if kind == "retry" else "Stopped"
    reason = "RetryPending" if kind == "retry" else "StopPending"
    status.conditions = set_condition(
        status.conditions, type_, False, reason, f"{kind} {token!r} waits: {message}", generation
    )
    return status


def stopped(status: FlowStatus, note: StopNote, generation: int | None, now: str) -> FlowStatus:
    """A stop just applied. The phase is left to the tracker, which reads the jobs next: the
    flow is Stopped (condition Stopped True) once no job runs any more (flowstatus.verdict)."""
    status = status.model_copy(deep=True)
    status.last_handled_stop = note.token
    status.conditions = set_condition(
        status.conditions, "Stopped", False, "Stopping", note.message, generation, now
    )
    return status


def stop_refused(
    status: FlowStatus, token: str, message: str, generation: int | None
) -> FlowStatus:
    status = status.model_copy(deep=True)
    status.last_handled_stop = token
    if status.phase == "Stopped":  # keep who stopped it: the refusal is in the Event
        return status
    status.conditions = set_condition(
        status.conditions,
        "Stopped",
        status.phase == "Stopped",
        "StopRefused",
        f"stop {token!r} refused: {message}",
        generation,
    )
    return status
