"""Readable children values and ignored failures, progress, and job counts in words."""

from bullflow.models.flow import FlowSpec, FlowStatus, NodeStatus
from bullflow.services.flowstatus import (
    JobSnapshot,
    StatusLimits,
    build_status,
    plural,
    progress,
    submitted,
    verdict,
)
from bullflow.services.flowtree import plan

UID = "0b5c2a3e-1111-4222-8333-444455556666"
LIMITS = StatusLimits(max_value_bytes=32, max_listed_nodes=50)


def key(queue: str, path: str) -> str:
    return f"bull:{queue}:bf-{UID}-{path}"


def build(root: dict, states: dict[str, JobSnapshot]) -> FlowStatus:
    jobs = plan(FlowSpec.model_validate({"root": root}), UID)
    snaps = {j.job_id: states[j.path] for j in jobs if j.path in states}
    return build_status(FlowStatus(), jobs, snaps, generation=1, limits=LIMITS, now="t")


def leaf(name: str, queue: str = "c", **opts: bool) -> dict:
    return {"name": name, "queueName": queue, **({"opts": opts} if opts else {})}


def node(status: FlowStatus, path: str) -> NodeStatus:
    return next(n for n in status.nodes if n.path == path)


def test_children_values_name_each_child_in_tree_order_and_keep_its_key():
    children = [leaf(f"part-{i}") for i in range(11)]  # 0.10 sorts after 0.9, not after 0.1
    states = {f"0.{i}": JobSnapshot("completed", 1, return_value=i) for i in range(11)}
    by_key = {key("c", f"0.{i}"): i for i in reversed(range(11))}
    states["0"] = JobSnapshot("completed", 1, return_value=55, children_values=by_key)
    status = build({"name": "sum", "queueName": "p", "children": children}, states)
    entries = [c.to_wire() for c in node(status, "0").children_values or []]
    assert [e["path"] for e in entries] == [f"0.{i}" for i in range(11)]
    assert entries[10] == {"path": "0.10", "name": "part-10", "key": key("c", "0.10"), "value": 10}


def test_a_child_not_of_the_flow_is_listed_by_its_key_alone():
    foreign = "bull:other:someone-elses-job"
    lookalike = f"bull:wrong-queue:bf-{UID}-0.0"  # the flow's job id on another queue
    values = {foreign: "x", key("c", "0.0"): 1, lookalike: "y"}
    status = build(
        {"name": "p", "queueName": "p", "children": [leaf("a")]},
        {
            "0": JobSnapshot("completed", 1, children_values=values),
            "0.0": JobSnapshot("completed", 1, return_value=1),
        },
    )
    entries = [c.to_wire() for c in node(status, "0").children_values or []]
    assert entries == [
        {"path": "0.0", "name": "a", "key": key("c", "0.0"), "value": 1},
        {"key": foreign, "value": "x"},
        {"key": lookalike, "value": "y"},
    ]


def test_long_child_values_and_reasons_are_cut_and_marked():
    status = build(
        {"name": "p", "queueName": "p", "children": [leaf("a", ignoreDependencyOnFailure=True)]},
        {
            "0": JobSnapshot("waiting", 0, ignored_failures={key("c", "0.0"): "e" * 100}),
            "0.0": JobSnapshot("failed", 1, failed_reason="e" * 100),
        },
    )
    parent = node(status, "0")
    assert parent.truncated is True
    reason = (parent.ignored_failures or [])[0].reason
    assert reason.endswith("...(truncated)") and reason.startswith("e" * 32)


def test_a_leaf_has_no_children_entries():
    status = build(leaf("only"), {"0": JobSnapshot("completed", 1, return_value=1)})
    assert node(status, "0").children_values is None
    assert node(status, "0").ignored_failures is None


def test_a_status_written_before_the_lists_is_still_read():
    old = {
        "path": "0",
        "name": "p",
        "queue": "p",
        "jobId": "j",
        "state": "completed",
        "childrenValues": {key("c", "0.0"): 2},
        "ignoredFailures": {key("c", "0.1"): "boom"},
    }
    read = NodeStatus.model_validate(old)
    assert [c.to_wire() for c in read.children_values or []] == [
        {"key": key("c", "0.0"), "value": 2}
    ]
    assert [f.to_wire() for f in read.ignored_failures or []] == [
        {"key": key("c", "0.1"), "reason": "boom"}
    ]


def test_progress_counts_finished_jobs_and_a_completed_flow_reads_all():
    assert progress("Running", ["completed", "failed", "active", "waiting"]) == "2/4"
    assert progress("Failed", ["failed", "completed", "waiting-children"]) == "2/3"
    assert progress("Completed", ["completed", "failed", "completed"]) == "3/3"
    assert progress("Completed", ["completed", "waiting"]) == "2/2"
    assert progress("Submitted", ["waiting", "waiting"]) == "0/2"


def test_a_completed_flow_with_an_ignored_or_removed_child_reads_n_of_n():
    for option in ("ignoreDependencyOnFailure", "removeDependencyOnFailure"):
        status = build(
            {"name": "p", "queueName": "p", "children": [leaf("a"), leaf("b", **{option: True})]},
            {
                "0": JobSnapshot("completed", 1, return_value="ok"),
                "0.0": JobSnapshot("completed", 1, return_value=1),
                "0.1": JobSnapshot("failed", 1, failed_reason="boom"),
            },
        )
        assert status.phase == "Completed" and status.progress == "3/3", option


def test_a_completed_flow_whose_jobs_were_removed_on_complete_reads_n_of_n():
    root = {"name": "p", "queueName": "p", "children": [leaf("a", removeOnComplete=True)]}
    status = build(
        root, {"0": JobSnapshot("completed", 1, return_value=1), "0.0": JobSnapshot("unknown")}
    )
    assert status.phase == "Completed" and status.progress == "2/2"


def test_a_failed_flow_reads_the_jobs_that_ended():
    status = build(
        {"name": "p", "queueName": "p", "children": [leaf("a"), leaf("b"), leaf("c")]},
        {
            "0": JobSnapshot("waiting-children"),
            "0.0": JobSnapshot("completed", 1, return_value=1),
            "0.1": JobSnapshot("failed", 1, failed_reason="boom"),
            "0.2": JobSnapshot("active"),
        },
    )
    assert status.phase == "Failed" and status.progress == "2/4"


def test_one_job_is_written_in_the_singular():
    assert plural(1, "job") == "1 job" and plural(2, "job") == "2 jobs"
    assert plural(0, "job") == "0 jobs"
    one = plan(FlowSpec.model_validate({"root": leaf("only")}), UID)
    snap = {one[0].job_id: JobSnapshot("completed", 1)}
    assert verdict(one, snap).message == "the 1 job completed"
    assert verdict(one, {one[0].job_id: JobSnapshot("unknown")}).message.startswith(
        "1 of 1 job is missing from Redis"
    )
    message = next(c.message for c in submitted(FlowStatus(), 1, "t", 1).conditions)
    assert message == "1 job added to Redis in one transaction"
    three = plan(
        FlowSpec.model_validate({"root": {"name": "p", "queueName": "p", "children": [leaf("a")]}}),
        UID,
    )
    snaps = {j.job_id: JobSnapshot("unknown") for j in three}
    assert verdict(three, snaps).message.startswith("2 of 2 jobs are missing")
