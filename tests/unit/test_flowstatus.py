from bullflow.models.flow import FlowSpec, FlowStatus
from bullflow.services.conditions import set_condition
from bullflow.services.flowstatus import (
    JobSnapshot,
    StatusLimits,
    bounded,
    build_status,
    jobs_at_rest,
    snapshots_at_removal,
)
from bullflow.services.flowtree import plan

UID = "0b5c2a3e-1111-4222-8333-444455556666"
NOW = "2026-11-28T10:00:00Z"
LIMITS = StatusLimits(max_value_bytes=64, max_listed_nodes=50)


def jobs_of(root: dict):
    return plan(FlowSpec.model_validate({"root": root}), UID)


def parent_with(*children: dict) -> dict:
    return {"name": "parent", "queueName": "p", "children": list(children)}


def child(name: str, **opts) -> dict:
    return {"name": name, "queueName": "c", **({"opts": opts} if opts else {})}


def snaps(jobs, states: dict[str, JobSnapshot]):
    return {j.job_id: states[j.path] for j in jobs if j.path in states}


def status_for(root, states, previous=None):
    jobs = jobs_of(root)
    return build_status(
        previous or FlowStatus(), jobs, snaps(jobs, states), generation=1, limits=LIMITS, now=NOW
    )


def cond(status, type_):
    return next(c for c in status.conditions if c.type == type_)


def test_waiting_flow_is_submitted():
    s = status_for(
        parent_with(child("a")),
        {"0": JobSnapshot("waiting-children"), "0.0": JobSnapshot("waiting")},
    )
    assert s.phase == "Submitted" and s.progress == "0/2"
    assert cond(s, "Completed").status == "False" and cond(s, "Failed").status == "False"


def test_running_then_completed_with_children_values_and_result():
    key = f"bull:c:bf-{UID}-0.0"
    s = status_for(
        parent_with(child("a")),
        {
            "0": JobSnapshot("completed", 1, return_value=3, children_values={key: 3}),
            "0.0": JobSnapshot("completed", 1, return_value=3),
        },
    )
    assert s.phase == "Completed" and s.progress == "2/2" and s.result == 3
    assert s.finished_at == NOW
    assert cond(s, "Completed").status == "True" and cond(s, "Ready").reason == "Completed"
    assert [c.to_wire() for c in s.nodes[0].children_values or []] == [
        {"path": "0.0", "name": "a", "key": key, "value": 3}
    ]
    assert s.counts == {"completed": 2}


def test_active_child_means_running():
    s = status_for(
        parent_with(child("a")),
        {"0": JobSnapshot("waiting-children"), "0.0": JobSnapshot("active")},
    )
    assert s.phase == "Running"


def test_failed_child_without_options_fails_flow_with_child_failed():
    s = status_for(
        parent_with(child("a"), child("b")),
        {
            "0": JobSnapshot("waiting-children"),
            "0.0": JobSnapshot("completed", 1, return_value=1),
            "0.1": JobSnapshot("failed", 1, failed_reason="boom"),
        },
    )
    assert s.phase == "Failed"
    failed = cond(s, "Failed")
    assert failed.status == "True" and failed.reason == "ChildFailed"
    assert "job 0.1 (b on queue c) failed: boom" in failed.message


def test_a_failed_flow_is_at_rest_only_once_no_job_moves_by_itself():
    root = parent_with(child("a"), child("b"))
    failed_child = JobSnapshot("failed", 1, failed_reason="boom")
    for sibling, at_rest in [
        ("active", False),
        ("waiting", False),
        ("delayed", False),
        ("prioritized", False),
        ("completed", True),
        ("failed", True),
    ]:
        states = {"0": JobSnapshot("waiting-children"), "0.0": failed_child}
        s = status_for(root, {**states, "0.1": JobSnapshot(sibling)})
        assert s.phase == "Failed", sibling
        assert jobs_at_rest(s) is at_rest, sibling
    assert jobs_at_rest(FlowStatus(phase="Failed"))  # refused before any job was written


def test_the_outcome_kept_at_removal_is_how_the_jobs_ended():
    jobs = jobs_of(parent_with(child("a"), child("b")))
    failed_child = JobSnapshot("failed", 1, failed_reason="boom")

    def kept(sibling: str) -> FlowStatus | None:
        states = {"0": JobSnapshot("waiting-children"), "0.0": JobSnapshot(sibling)}
        at_removal = snapshots_at_removal(jobs, snaps(jobs, {**states, "0.1": failed_child}))
        if at_removal is None:
            return None
        return build_status(FlowStatus(), jobs, at_removal, generation=1, limits=LIMITS, now=NOW)

    completed = kept("completed")
    assert completed is not None and completed.phase == "Failed" and jobs_at_rest(completed)
    assert completed.counts == {"completed": 1, "failed": 1, "waiting-children": 1}
    never_ran = kept("waiting")  # removed with the Flow: it never runs
    assert never_ran is not None and never_ran.counts == {
        "failed": 1,
        "removed": 1,
        "waiting-children": 1,
    }
    assert kept("active") is None  # the removal waits for it
    assert kept("unknown") is None  # gone before this read: an earlier, partial removal


def test_ignored_failure_lets_parent_run_and_is_recorded():
    key = f"bull:c:bf-{UID}-0.0"
    s = status_for(
        parent_with(child("a", ignoreDependencyOnFailure=True)),
        {
            "0": JobSnapshot("completed", 1, return_value="ok", ignored_failures={key: "boom"}),
            "0.0": JobSnapshot("failed", 1, failed_reason="boom"),
        },
    )
    assert s.phase == "Completed" and s.progress == "2/2"
    assert [f.to_wire() for f in s.nodes[0].ignored_failures or []] == [
        {"path": "0.0", "name": "a", "key": key, "reason": "boom"}
    ]


def test_ignored_failure_while_parent_still_pending_is_not_a_failure():
    s = status_for(
        parent_with(child("a", ignoreDependencyOnFailure=True)),
        {"0": JobSnapshot("waiting"), "0.0": JobSnapshot("failed", 1, failed_reason="x")},
    )
    assert s.phase == "Running"


def test_fail_parent_on_failure_reports_the_deepest_cause():
    root = {
        "name": "r",
        "queueName": "p",
        "children": [
            {
                "name": "mid",
                "queueName": "m",
                "opts": {"failParentOnFailure": True},
                "children": [child("leaf", failParentOnFailure=True)],
            }
        ],
    }
    s = status_for(
        root,
        {
            "0": JobSnapshot("failed", 0, failed_reason="child bull:m:x failed"),
            "0.0": JobSnapshot("failed", 0, failed_reason="child bull:c:y failed"),
            "0.0.0": JobSnapshot("failed", 3, failed_reason="leaf broke"),
        },
    )
    assert s.phase == "Failed"
    assert cond(s, "Failed").reason == "JobFailed"
    assert "caused by job 0.0.0 (leaf on queue c): leaf broke" in cond(s, "Failed").message


def test_fail_parent_chain_broken_midway_is_child_failed():
    root = {
        "name": "r",
        "queueName": "p",
        "children": [
            {"name": "mid", "queueName": "m", "children": [child("leaf", failParentOnFailure=True)]}
        ],
    }
    s = status_for(
        root,
        {
            "0": JobSnapshot("waiting-children"),
            "0.0": JobSnapshot("failed", 0, failed_reason="child failed"),
            "0.0.0": JobSnapshot("failed", 1, failed_reason="leaf broke"),
        },
    )
    assert s.phase == "Failed" and cond(s, "Failed").reason == "ChildFailed"
    assert "job 0.0 (mid on queue m)" in cond(s, "Failed").message


def test_removed_on_complete_counts_as_completed():
    s = status_for(
        parent_with(child("a", removeOnComplete=True)),
        {"0": JobSnapshot("active"), "0.0": JobSnapshot("unknown")},
    )
    assert s.counts == {"active": 1, "completed": 1}


def test_large_values_are_truncated_and_marked():
    value, cut = bounded({"blob": "x" * 500}, LIMITS)
    assert cut and isinstance(value, str) and value.endswith("...(truncated)")
    assert len(value) < 100
    assert bounded({"small": 1}, LIMITS) == ({"small": 1}, False)
    s = status_for(child("solo"), {"0": JobSnapshot("completed", 1, return_value="y" * 500)})
    assert s.nodes[0].truncated is True and s.result.endswith("...(truncated)")


def test_large_flows_list_only_failed_and_active_nodes_with_counts():
    children = [child(f"c{i}") for i in range(120)]
    states = {"0": JobSnapshot("waiting-children")}
    states.update({f"0.{i}": JobSnapshot("completed", 1, return_value=i) for i in range(100)})
    states.update({f"0.{i}": JobSnapshot("active") for i in range(100, 110)})
    states.update({f"0.{i}": JobSnapshot("failed", 1, failed_reason="x") for i in range(110, 120)})
    s = status_for(parent_with(*children), states)
    assert s.nodes_truncated is True and s.total_nodes == 121
    assert s.counts == {"active": 10, "completed": 100, "failed": 10, "waiting-children": 1}
    assert {n.state for n in s.nodes} == {"active", "failed"} and len(s.nodes) == 20


def test_status_of_ten_thousand_nodes_stays_small():
    limits = StatusLimits(max_value_bytes=4096, max_listed_nodes=200)
    children = [child(f"c{i}") for i in range(10_000)]
    jobs = jobs_of(parent_with(*children))
    states = {j.job_id: JobSnapshot("failed", 1, failed_reason="r" * 5000) for j in jobs}
    s = build_status(FlowStatus(), jobs, states, generation=1, limits=limits, now=NOW)
    size = len(s.model_dump_json(by_alias=True))
    assert size < 256 * 1024 and s.nodes_truncated is True
    assert s.counts == {"failed": 10_001} and 0 < len(s.nodes) < 200


def test_condition_transition_time_kept_when_status_unchanged():
    first = set_condition([], "Ready", False, "Running", now="2026-01-01T00:00:00Z")
    second = set_condition(first, "Ready", False, "Running", "still", now="2026-01-02T00:00:00Z")
    assert second[0].last_transition_time == "2026-01-01T00:00:00Z"
    third = set_condition(second, "Ready", True, "Completed", now="2026-01-03T00:00:00Z")
    assert third[0].last_transition_time == "2026-01-03T00:00:00Z"
