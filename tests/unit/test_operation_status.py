"""Statuses around retry and stop: the Stopped phase from the jobs, a retried flow Running
even before a worker takes a job, the retry history bounded."""

from __future__ import annotations

from dataclasses import replace

from bullflow.models.flow import FlowStatus, RetryRecord
from bullflow.services.flowstatus import JobSnapshot, StatusLimits, StopNote, build_status
from bullflow.services.flowtree import plan
from bullflow.services.operation_status import (
    MAX_RETRY_RECORDS,
    retried,
    retry_refused,
    stop_refused,
)
from tests.unit.test_retry_plan import UID, leaf, node, spec

FLOW = spec(node("p", [leaf("a"), leaf("b")]))
JOBS = plan(FLOW, UID)
NOTE = StopNote("by me at t", frozenset({"0", "0.1"}), 1)


def build(states: list[str], previous: FlowStatus | None = None, stop: StopNote | None = None):
    snaps = {j.job_id: JobSnapshot(s) for j, s in zip(JOBS, states, strict=True)}
    return build_status(
        previous or FlowStatus(),
        JOBS,
        snaps,
        generation=1,
        limits=StatusLimits(),
        now="t",
        stop=stop,
    )


def test_a_stopped_flow_is_stopping_while_a_job_runs_then_stopped():
    stopping = build(["unknown", "active", "unknown"], stop=NOTE)
    assert stopping.phase == "Running" and not stopping.finished_at
    assert next(c for c in stopping.conditions if c.type == "Ready").reason == "Stopping"
    done = build(["unknown", "completed", "unknown"], stop=NOTE)
    assert done.phase == "Stopped" and done.finished_at == "t"
    assert [n.state for n in done.nodes] == ["removed", "completed", "removed"]
    stopped = next(c for c in done.conditions if c.type == "Stopped")
    assert stopped.status == "True" and stopped.message == NOTE.message
    assert (
        NOTE.message
        == "stopped (by me at t): 2 jobs not yet started removed, 1 running job left to finish"
    )


def test_without_the_stop_the_removed_jobs_are_lost():
    assert build(["unknown", "completed", "unknown"]).conditions[-1].reason == "JobsLost"


def test_a_retried_flow_is_running_before_any_job_is_taken():
    previous = FlowStatus(retry_count=1)
    assert build(["waiting-children", "waiting", "waiting"], previous).phase == "Running"
    assert build(["waiting-children", "waiting", "waiting"]).phase == "Submitted"


def test_retried_records_are_bounded_and_clear_the_finish():
    status = FlowStatus(phase="Failed", finished_at="t0")
    for i in range(MAX_RETRY_RECORDS + 5):
        status = retried(status, RetryRecord(value=f"r{i}", time="t", nodes=["0.1"]), 1, "t")
    assert status.retry_count == MAX_RETRY_RECORDS + 5 and len(status.retries or []) == 20
    assert (status.retries or [])[0].value == "r5" and status.last_handled_retry == "r24"
    assert status.phase == "Running" and status.finished_at is None
    retried_cond = next(c for c in status.conditions if c.type == "Retried")
    assert retried_cond.status == "True" and "'r24'" in retried_cond.message


def test_refusals_record_the_token_and_keep_who_stopped_it():
    refused = retry_refused(FlowStatus(phase="Completed"), "x", "the flow is Completed", 1)
    cond = next(c for c in refused.conditions if c.type == "Retried")
    assert refused.last_handled_retry == "x" and cond.reason == "RetryRefused"
    stopped = build(["unknown", "completed", "unknown"], stop=NOTE)
    again = stop_refused(stopped, "y", "already stopped", 1)
    assert again.last_handled_stop == "y"
    assert next(c for c in again.conditions if c.type == "Stopped").message == NOTE.message


def test_a_stop_with_nothing_running_says_so():
    note = replace(NOTE, running=0)
    assert note.message == "stopped (by me at t): 2 jobs not yet started removed, none was running"
