"""What a retry request moves back: BullMQ's reprocessJob for jobs that ran and failed, our
reopen step for parents their failParentOnFailure child failed; refusals."""

from __future__ import annotations

import pytest

from bullflow.models.flow import FlowSpec
from bullflow.services.flowstatus import JobSnapshot
from bullflow.services.flowtree import plan
from bullflow.services.retry_plan import (
    RetryRefused,
    RetryRequest,
    plan_retry,
    retry_request,
    stop_token,
)

UID = "0b5c2a3e-1111-4222-8333-444455556666"
FPOF = {"failParentOnFailure": True}


def spec(root: dict) -> FlowSpec:
    return FlowSpec.model_validate({"root": root})


def leaf(name: str, opts: dict | None = None) -> dict:
    return {"name": name, "queueName": "q", **({"opts": opts} if opts else {})}


def node(name: str, children: list[dict], opts: dict | None = None) -> dict:
    return {**leaf(name, opts), "children": children}


def snaps_for(flow: FlowSpec, **states: str) -> tuple[list, dict]:
    """States by node name (default completed)."""
    jobs = plan(flow, UID)
    return jobs, {j.job_id: JobSnapshot(states.get(j.name, "completed")) for j in jobs}


def paths(jobs: list) -> list[str]:
    return [j.path for j in jobs]


def test_annotations_parse_token_nodes_and_reset():
    assert retry_request({}) is None
    assert retry_request({"bullflow.io/retry": "  "}) is None
    req = retry_request(
        {
            "bullflow.io/retry": "t1",
            "bullflow.io/retry-nodes": "0.1, extract,,0.1",
            "bullflow.io/retry-reset-attempts": "True",
        }
    )
    assert req == RetryRequest("t1", ("0.1", "extract"), True)
    assert stop_token({"bullflow.io/stop": "by me at now"}) == "by me at now"
    assert stop_token({"bullflow.io/stop": ""}) is None


def test_default_options_failed_child_alone_goes_back_to_wait():
    flow = spec(node("p", [leaf("a"), leaf("b")]))
    jobs, snaps = snaps_for(flow, p="waiting-children", b="failed")
    result = plan_retry("Failed", jobs, snaps, RetryRequest("t"))
    assert paths(result.reprocess) == ["0.1"] and result.reopen == []


def test_fail_parent_chain_reopens_the_failed_ancestors_and_retries_the_cause():
    flow = spec(node("root", [leaf("done"), node("mid", [leaf("ok"), leaf("bad", FPOF)], FPOF)]))
    jobs, snaps = snaps_for(flow, root="failed", mid="failed", bad="failed")
    result = plan_retry("Failed", jobs, snaps, RetryRequest("t"))
    assert paths(result.reprocess) == ["0.1.1"]
    assert paths(result.reopen) == ["0", "0.1"]  # topmost first
    assert result.paths == ["0", "0.1", "0.1.1"]


def test_naming_a_parent_failed_by_its_child_retries_the_cause_below_it():
    flow = spec(node("root", [node("mid", [leaf("bad", FPOF)], FPOF)]))
    jobs, snaps = snaps_for(flow, root="failed", mid="failed", bad="failed")
    result = plan_retry("Failed", jobs, snaps, RetryRequest("t", ("mid",)))
    assert paths(result.reprocess) == ["0.0.0"] and paths(result.reopen) == ["0", "0.0"]


def test_every_failed_child_a_reopened_parent_holds_is_retried_too():
    """BullMQ refuses to complete a parent with unsuccessful children left."""
    flow = spec(node("p", [leaf("x", FPOF), leaf("y", FPOF), leaf("z")]))
    jobs, snaps = snaps_for(flow, p="failed", x="failed", y="failed")
    result = plan_retry("Failed", jobs, snaps, RetryRequest("t", ("x",)))
    assert sorted(paths(result.reprocess)) == ["0.0", "0.1"] and paths(result.reopen) == ["0"]


def test_a_failed_root_whose_children_completed_runs_alone():
    flow = spec(node("root", [leaf("a"), leaf("b")]))
    jobs, snaps = snaps_for(flow, root="failed")
    result = plan_retry("Failed", jobs, snaps, RetryRequest("t"))
    assert paths(result.reprocess) == ["0"] and result.reopen == []


def test_tolerated_failures_are_not_retried_by_default_and_refused_by_name():
    flow = spec(node("root", [leaf("ign", {"ignoreDependencyOnFailure": True})]))
    jobs, snaps = snaps_for(flow, root="failed", ign="failed")
    assert paths(plan_retry("Failed", jobs, snaps, RetryRequest("t")).reprocess) == ["0"]
    with pytest.raises(RetryRefused, match="tolerates"):
        plan_retry("Failed", jobs, snaps, RetryRequest("t", ("ign",)))


@pytest.mark.parametrize(
    ("phase", "needle"),
    [
        ("Completed", "Completed: there is nothing to retry"),
        ("Running", "only a Failed or Stopped flow"),
        ("Pending", "not submitted"),
    ],
)
def test_phases_that_cannot_be_retried(phase, needle):
    jobs, snaps = snaps_for(spec(leaf("a")), a="failed")
    with pytest.raises(RetryRefused, match=needle):
        plan_retry(phase, jobs, snaps, RetryRequest("t"))


def test_unknown_or_unretriable_nodes_are_refused():
    flow = spec(node("p", [leaf("a"), leaf("b")]))
    jobs, snaps = snaps_for(flow, p="waiting-children", b="failed")
    with pytest.raises(RetryRefused, match="no node with path or name 'nope'"):
        plan_retry("Failed", jobs, snaps, RetryRequest("t", ("nope",)))
    with pytest.raises(RetryRefused, match=r"node 0.0 \(a\) is completed"):
        plan_retry("Failed", jobs, snaps, RetryRequest("t", ("0.0",)))


def test_jobs_gone_from_redis_are_listed_and_refused():
    flow = spec(node("p", [leaf("a"), leaf("b", {"removeOnFail": True})]))
    jobs, snaps = snaps_for(flow, p="waiting-children", b="unknown")
    with pytest.raises(RetryRefused, match=r"1 job of the flow is no longer in Redis.*0.1 \(b\)"):
        plan_retry("Failed", jobs, snaps, RetryRequest("t"))


def test_jobs_removed_by_a_stop_are_not_missing():
    flow = spec(node("p", [leaf("a"), leaf("b")]))
    jobs, snaps = snaps_for(flow, p="unknown", b="unknown")
    result = plan_retry("Stopped", jobs, snaps, RetryRequest("t"), {"0", "0.1"})
    assert result.reprocess == [] and result.reopen == []


def test_nothing_failed_nothing_stopped_is_refused():
    jobs, snaps = snaps_for(spec(node("p", [leaf("a")])), p="failed", a="failed")
    snaps = {k: JobSnapshot("completed") for k in snaps}
    with pytest.raises(RetryRefused, match="no failed job"):
        plan_retry("Failed", jobs, snaps, RetryRequest("t"))
