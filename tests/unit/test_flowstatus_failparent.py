"""failParentOnFailure: the flow's outcome is read from the parent, which BullMQ fails because
of the child (at once with older scripts, after moving it to wait for a worker with BullMQ 5)."""

from __future__ import annotations

from bullflow.models.flow import FlowSpec, FlowStatus
from bullflow.services.flowstatus import JobSnapshot, StatusLimits, build_status
from bullflow.services.flowtree import plan

UID = "0b5c2a3e-1111-4222-8333-444455556666"
SPEC = FlowSpec.model_validate(
    {
        "root": {
            "name": "p",
            "queueName": "q",
            "children": [{"name": "c", "queueName": "q", "opts": {"failParentOnFailure": True}}],
        }
    }
)


def status(parent: JobSnapshot, child: JobSnapshot) -> FlowStatus:
    jobs = plan(SPEC, UID)
    snaps = {jobs[0].job_id: parent, jobs[1].job_id: child}
    return build_status(FlowStatus(), jobs, snaps, generation=1, limits=StatusLimits(), now="t")


def test_a_failed_child_whose_parent_waits_to_be_failed_is_not_the_end_yet():
    s = status(JobSnapshot("waiting"), JobSnapshot("failed", 1, failed_reason="boom"))
    assert s.phase == "Running" and not s.finished_at  # still followed: the parent will move


def test_the_parent_failed_by_its_child_ends_the_flow_naming_the_child():
    s = status(
        JobSnapshot("failed", 1, failed_reason="child failed"),
        JobSnapshot("failed", 1, failed_reason="boom"),
    )
    ready = next(c for c in s.conditions if c.type == "Ready")
    assert s.phase == "Failed" and ready.reason == "JobFailed"
    assert "caused by job 0.0 (c on queue q): boom" in ready.message
