"""The status-truth checker's pure part (tests/harness/status_truth.py): hand-made Flow objects
and hand-made Redis truths. A consistent pair gives no disagreement; each kind of wrong status
is reported, with a line that says what is wrong."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.status_truth import (
    TRUNCATED_MARK,
    FlowTruth,
    JobTruth,
    Limits,
    compare_flow,
    expected,
    planned_jobs,
    value_mismatch,
)

UID = "0b5c2a3e-1111-4222-8333-444455556666"
NS = "chaos"
LIMITS = Limits(max_value_bytes=64, max_listed_nodes=200, max_status_bytes=16 * 1024)
EMOJI = "🚀"  # 4 UTF-8 bytes
CJK = "注文"  # 3 bytes each


def job_id(path: str) -> str:
    return f"bf-{UID}-{path}"


def child_key(path: str, queue: str = "bc") -> str:
    return f"bull:{queue}:{job_id(path)}"


def flow_object(status: dict[str, Any], children_opts: dict[str, Any] | None = None) -> dict:
    """A Flow as the API server returns it: parent `sum` on bp, children `one`/`two` on bc."""
    two: dict[str, Any] = {"name": "two", "queueName": "bc", "data": {"result": 2}}
    if children_opts:
        two["opts"] = children_opts
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": "f", "namespace": NS, "uid": UID},
        "spec": {
            "root": {
                "name": "sum",
                "queueName": "bp",
                "data": {"combine": "sum"},
                "children": [{"name": "one", "queueName": "bc", "data": {"result": 1}}, two],
            }
        },
        "status": status,
    }


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def completed_status() -> dict[str, Any]:
    return {
        "phase": "Completed",
        "progress": "3/3",
        "submittedAt": "2026-11-30T10:00:00Z",
        "finishedAt": "2026-11-30T10:00:01Z",
        "conditions": [
            cond("Submitted", "True", "Submitted"),
            cond("Completed", "True", "Completed", "all 3 jobs completed"),
            cond("Failed", "False", "NotFailed"),
            cond("Ready", "True", "Completed", "all 3 jobs completed"),
        ],
        "result": 3,
        "totalNodes": 3,
        "counts": {"completed": 3},
        "nodes": [
            {
                "path": "0",
                "name": "sum",
                "queue": "bp",
                "jobId": job_id("0"),
                "state": "completed",
                "attemptsMade": 1,
                "returnValue": 3,
                "childrenValues": [
                    {"path": "0.0", "name": "one", "key": child_key("0.0"), "value": 1},
                    {"path": "0.1", "name": "two", "key": child_key("0.1"), "value": 2},
                ],
                "ignoredFailures": [],
            },
            node("0.0", "one", "completed", 1, returnValue=1),
            node("0.1", "two", "completed", 1, returnValue=2),
        ],
    }


def node(path: str, name: str, state: str, attempts: int, **more: Any) -> dict[str, Any]:
    return {
        "path": path,
        "name": name,
        "queue": "bc",
        "jobId": job_id(path),
        "state": state,
        "attemptsMade": attempts,
        **more,
    }


def completed_truth(flow: dict[str, Any]) -> FlowTruth:
    _, jobs = planned_jobs(flow)
    return FlowTruth(
        jobs,
        {
            job_id("0"): JobTruth(
                True,
                "completed",
                1,
                return_value=3,
                children_values={child_key("0.0"): 1, child_key("0.1"): 2},
            ),
            job_id("0.0"): JobTruth(True, "completed", 1, return_value=1),
            job_id("0.1"): JobTruth(True, "completed", 1, return_value=2),
        },
    )


def check(edit: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
    status = completed_status()
    if edit:
        edit(status)
    flow = flow_object(status)
    return compare_flow(flow, completed_truth(flow), LIMITS)


def test_a_status_that_says_what_redis_says_has_no_disagreement():
    assert check() == []


def set_in(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(status: dict[str, Any]) -> None:
        target: Any = status
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return edit


DELETE = object()


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (set_in(("phase",), "Running"), "phase 'Running', Redis says 'Completed'"),
        (set_in(("nodes", 1, "state"), "active"), "node 0.0: state 'active'"),
        (set_in(("nodes", 2, "attemptsMade"), 2), "node 0.1: attemptsMade 2"),
        (set_in(("nodes", 2, "returnValue"), 20), "node 0.1: returnValue: 20 != Redis 2"),
        (set_in(("nodes", 2, "failedReason"), "boom"), "node 0.1: failedReason: 'boom'"),
        (
            set_in(("nodes", 0, "childrenValues", 1, "value"), 3),
            f"node 0: childrenValues[{child_key('0.1')}]: 3 != Redis 2",
        ),
        (
            set_in(("nodes", 0, "childrenValues", 1, "name"), "one"),
            f"node 0: childrenValues[{child_key('0.1')}]: path/name '0.1'/'one', the spec's "
            "'0.1'/'two'",
        ),
        (
            set_in(("nodes", 0, "childrenValues", 1, "path"), DELETE),
            f"node 0: childrenValues[{child_key('0.1')}]: path/name None/'two'",
        ),
        (
            set_in(
                ("nodes", 0, "childrenValues"),
                [{"path": "0.0", "name": "one", "key": child_key("0.0"), "value": 1}],
            ),
            "childrenValues keys differ from Redis: 1 shown, 2 in Redis",
        ),
        (set_in(("counts",), {"completed": 2, "active": 1}), "counts {'completed': 2"),
        (set_in(("progress",), "2/3"), "progress '2/3', Redis says '3/3'"),
        (set_in(("totalNodes",), 4), "totalNodes 4, the spec has 3 jobs"),
        (set_in(("result",), 4), "result: 4 != Redis 3"),
        (set_in(("result",), DELETE), "result: None != Redis 3"),
        (set_in(("conditions", 3, "status"), "False"), "Ready=False (Completed), want True"),
        (set_in(("conditions", 1, "status"), "False"), "condition Completed=False, want True"),
        (set_in(("conditions", 2, "status"), "True"), "condition Failed=True, want False"),
        (
            set_in(("conditions", 0, "reason"), "RedisUnavailable"),
            "condition Submitted says RedisUnavailable but Redis answers",
        ),
        (set_in(("conditions",), []), "no Ready condition"),
        (set_in(("nodes",), []), "3 node(s) not listed without nodesTruncated"),
        (set_in(("nodes", 1, "jobId"), "bf-other-0.0"), "node 0.0: jobId 'bf-other-0.0'"),
        (set_in(("nodes", 1, "path"), "0.7"), "node 0.7 listed but the spec has no such node"),
        (set_in(("finishedAt",), DELETE), "phase Completed without finishedAt"),
        (set_in(("submittedAt",), DELETE), "not submitted"),
    ],
)
def test_each_kind_of_wrong_status_is_reported(edit, said):
    found = check(edit)
    assert any(said in line for line in found), found
    assert all(line.startswith(f"{NS}/f: ") for line in found)


def test_nodes_may_be_left_out_only_with_nodes_truncated_and_counts_still_compared():
    def truncated(status: dict[str, Any]) -> None:
        status["nodesTruncated"] = True
        status["nodes"] = status["nodes"][:1]

    assert check(truncated) == []

    def truncated_wrong_counts(status: dict[str, Any]) -> None:
        truncated(status)
        status["counts"] = {"completed": 1, "waiting": 2}

    assert any("counts" in line for line in check(truncated_wrong_counts))


def test_a_status_over_the_byte_budget_is_reported_counting_utf8_bytes():
    # 3,000 emoji are 3,000 characters (under the 16 KiB budget) but 12,000 bytes: twice over.
    def huge(status: dict[str, Any]) -> None:
        status["conditions"][0]["message"] = EMOJI * 3000 + CJK * 1000

    found = check(huge)
    assert any("UTF-8 bytes, over the 16384-byte budget" in line for line in found), found


def truth_with(flow: dict[str, Any], **by_path: JobTruth) -> FlowTruth:
    _, jobs = planned_jobs(flow)
    return FlowTruth(jobs, {job_id(p.replace("_", ".")): t for p, t in by_path.items()})


def running_status(phase: str, counts: dict[str, int], conditions: list[dict]) -> dict[str, Any]:
    return {
        "phase": phase,
        "progress": f"{counts.get('completed', 0) + counts.get('failed', 0)}/3",
        "submittedAt": "2026-11-30T10:00:00Z",
        "conditions": [cond("Submitted", "True", "Submitted"), *conditions],
        "totalNodes": 3,
        "counts": counts,
        "nodesTruncated": True,
        "nodes": [],
    }


def test_phase_rules_follow_bullmq_failure_semantics():
    flow = flow_object({})
    waiting = JobTruth(True, "waiting")
    parent_blocked = JobTruth(True, "waiting-children")
    done = JobTruth(True, "completed", 1, return_value=1)
    failed = JobTruth(True, "failed", 1, failed_reason="boom")
    assert (
        expected(truth_with(flow, **{"0": parent_blocked, "0_0": waiting, "0_1": waiting})).phase
        == "Submitted"
    )
    assert (
        expected(truth_with(flow, **{"0": parent_blocked, "0_0": done, "0_1": waiting})).phase
        == "Running"
    )
    # No failure option: the parent waits forever -> Failed.
    assert (
        expected(truth_with(flow, **{"0": parent_blocked, "0_0": done, "0_1": failed})).phase
        == "Failed"
    )
    # A root that failed -> Failed.
    root_failed = JobTruth(True, "failed", 1, failed_reason="x")
    assert (
        expected(truth_with(flow, **{"0": root_failed, "0_0": done, "0_1": done})).phase == "Failed"
    )
    # ignoreDependencyOnFailure: the parent runs; its failure alone does not fail the flow.
    tolerant = flow_object({}, {"ignoreDependencyOnFailure": True})
    active_parent = JobTruth(True, "active")
    assert (
        expected(truth_with(tolerant, **{"0": active_parent, "0_0": done, "0_1": failed})).phase
        == "Running"
    )
    root_done = JobTruth(True, "completed", 1, return_value=1)
    assert (
        expected(truth_with(tolerant, **{"0": root_done, "0_0": done, "0_1": failed})).phase
        == "Completed"
    )
    # Lost jobs (not removed by any option) -> Failed.
    assert expected(truth_with(flow, **{"0": parent_blocked, "0_0": done})).lost[0].path == "0.1"
    # removeOnComplete: a job that is gone counts as completed.
    removed = flow_object({}, {"removeOnComplete": True})
    exp = expected(truth_with(removed, **{"0": parent_blocked, "0_0": done}))
    assert exp.states["0.1"] == "completed" and not exp.lost and exp.phase == "Running"


def test_a_failed_child_blocking_its_parent_must_show_failed_with_a_failure_reason():
    flow = flow_object({})
    truth = truth_with(
        flow,
        **{
            "0": JobTruth(True, "waiting-children"),
            "0_0": JobTruth(True, "completed", 1, return_value=1),
            "0_1": JobTruth(True, "failed", 1, failed_reason="boom"),
        },
    )
    counts = {"completed": 1, "failed": 1, "waiting-children": 1}
    still_running = running_status(
        "Running",
        counts,
        [cond("Ready", "False", "Running"), cond("Completed", "False", "NotCompleted")],
    )
    found = compare_flow(flow_object(still_running), truth, LIMITS)
    assert any("phase 'Running', Redis says 'Failed'" in line for line in found), found
    assert any("not one of ('JobFailed', 'ChildFailed')" in line for line in found), found
    right = running_status(
        "Failed",
        counts,
        [
            cond("Ready", "False", "ChildFailed", "job 0.1 failed: boom"),
            cond("Completed", "False", "NotCompleted"),
            cond("Failed", "True", "ChildFailed", "job 0.1 failed: boom"),
        ],
    )
    right["finishedAt"] = "2026-11-30T10:00:02Z"
    assert compare_flow(flow_object(right), truth, LIMITS) == []


def test_jobs_missing_from_redis_must_be_reported_as_jobs_lost_with_their_count():
    flow = flow_object({})
    truth = truth_with(flow, **{"0": JobTruth(True, "waiting-children")})  # 0.0, 0.1 gone
    counts = {"unknown": 2, "waiting-children": 1}
    unaware = running_status("Submitted", counts, [cond("Ready", "False", "Submitted")])
    found = compare_flow(flow_object(unaware), truth, LIMITS)
    assert any("2 of 3 jobs missing from Redis but Ready reason is 'Submitted'" in x for x in found)
    assert any("phase 'Submitted', Redis says 'Failed'" in line for line in found), found

    def lost(message: str) -> dict[str, Any]:
        status = running_status(
            "Failed",
            counts,
            [
                cond("Ready", "False", "JobsLost", message),
                cond("Completed", "False", "NotCompleted"),
                cond("Failed", "True", "JobsLost", message),
            ],
        )
        status["finishedAt"] = "2026-11-30T10:00:02Z"
        return status

    said = "2 of 3 jobs are missing from Redis: 0.0 (one on queue bc), 0.1 (two on queue bc)"
    assert compare_flow(flow_object(lost(said)), truth, LIMITS) == []
    found = compare_flow(flow_object(lost("jobs are missing from Redis")), truth, LIMITS)
    assert any("does not say how many jobs are missing (2)" in line for line in found), found


def test_a_flow_finished_before_redis_lost_everything_is_not_compared():
    flow = flow_object(completed_status())
    _, jobs = planned_jobs(flow)
    gone = FlowTruth(jobs, {}, marker=False)
    assert compare_flow(flow, gone, LIMITS) == []
    # ...but with its marker still there, the loss is the operator's to report.
    found = compare_flow(flow, FlowTruth(jobs, {}, marker=True), LIMITS)
    assert any("JobsLost" in line for line in found), found


def test_truncated_values_must_be_marked_prefixes_cut_on_characters_within_the_byte_limit():
    value = EMOJI * 10 + CJK * 20  # 40 + 120 bytes, 50 characters
    assert len(json_bytes(value)) > LIMITS.max_value_bytes
    good = EMOJI * 10 + "注文注文注文注文" + TRUNCATED_MARK  # 64 bytes kept
    assert value_mismatch(good, value, LIMITS) is None
    # Cut at 64 characters' worth is 4x over the byte limit: bytes, not characters, count.
    over = value[:40] + TRUNCATED_MARK
    assert "over the 64-byte limit" in (value_mismatch(over, value, LIMITS) or "")
    # A cut that broke a character (U+FFFD) is not a prefix of the value.
    broken = EMOJI * 10 + "\ufffd" + TRUNCATED_MARK
    assert "not a prefix" in (value_mismatch(broken, value, LIMITS) or "")
    # Over the limit and shown whole.
    assert "shown whole" in (value_mismatch(value, value, LIMITS) or "")
    # Within the limit but shown truncated.
    assert "within 64" in (value_mismatch("ab" + TRUNCATED_MARK, "abc", LIMITS) or "")
    # Structured values are cut as their JSON text.
    data = {"名前": CJK * 30}
    assert value_mismatch('{"名前":"注文' + TRUNCATED_MARK, data, LIMITS) is None
    # JSON equality: key order does not matter; True is not 1.
    assert value_mismatch({"b": 1, "a": 2}, {"a": 2, "b": 1}, LIMITS) is None
    assert value_mismatch(1, True, LIMITS) is not None


def test_a_truncated_value_needs_the_node_marked_truncated():
    value = EMOJI * 40  # 160 bytes
    flow = flow_object(completed_status())
    truth = completed_truth(flow)
    truth.by_id[job_id("0.1")] = JobTruth(True, "completed", 1, return_value=value)
    truth.by_id[job_id("0")].children_values[child_key("0.1")] = value
    shown = EMOJI * 16 + TRUNCATED_MARK
    status = copy.deepcopy(flow["status"])
    status["nodes"][2]["returnValue"] = shown
    status["nodes"][0]["childrenValues"][1]["value"] = shown
    found = compare_flow(flow_object(status), truth, LIMITS)
    assert sum("does not say truncated: true" in line for line in found) == 2, found
    status["nodes"][2]["truncated"] = True
    status["nodes"][0]["truncated"] = True
    assert compare_flow(flow_object(status), truth, LIMITS) == []


def json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False).encode()


def test_a_refused_submission_must_be_failed_and_nothing_else_is_compared():
    flow = flow_object({})
    _, jobs = planned_jobs(flow)
    nothing = FlowTruth(jobs, {}, marker=True)
    refused = {
        "phase": "Failed",
        "submittedAt": "2026-11-30T10:00:00Z",
        "finishedAt": "2026-11-30T10:00:00Z",
        "conditions": [
            cond("Failed", "True", "SubmitRejected", "BullMQ refused 1 job(s)"),
            cond("Ready", "False", "SubmitRejected", "BullMQ refused 1 job(s)"),
        ],
    }
    assert compare_flow(flow_object(refused), nothing, LIMITS) == []
    refused["phase"] = "Running"
    found = compare_flow(flow_object(refused), nothing, LIMITS)
    assert any("Ready reason SubmitRejected but phase 'Running'" in line for line in found)


def test_a_child_not_of_the_flow_is_shown_by_its_key_alone():
    foreign = "bull:elsewhere:not-ours"
    flow = flow_object(completed_status())
    truth = completed_truth(flow)
    truth.by_id[job_id("0")].children_values[foreign] = "x"
    status = copy.deepcopy(flow["status"])
    status["nodes"][0]["childrenValues"].append({"key": foreign, "value": "x"})
    assert compare_flow(flow_object(status), truth, LIMITS) == []
    status["nodes"][0]["childrenValues"][2]["name"] = "one"
    found = compare_flow(flow_object(status), truth, LIMITS)
    assert any(f"childrenValues[{foreign}]: path/name None/'one'" in m for m in found), found
