"""Stop: which jobs are removed (parents first) and which are left to finish; the re-add plan a
retry of a stopped flow runs."""

from __future__ import annotations

import pytest

from bullflow.services.flowstatus import JobSnapshot
from bullflow.services.flowtree import plan
from bullflow.services.stop_plan import StopRefused, plan_readd, plan_stop
from tests.unit.test_retry_plan import UID, leaf, node, snaps_for, spec


def test_not_started_jobs_are_removed_parents_first_and_running_ones_left():
    flow = spec(node("p", [leaf("a"), leaf("b"), node("m", [leaf("c")])]))
    jobs, snaps = snaps_for(
        flow, p="waiting-children", b="active", m="waiting-children", c="delayed"
    )
    result = plan_stop("Running", jobs, snaps)
    assert [j.path for j in result.remove] == ["0", "0.2", "0.2.0"]
    assert [j.path for j in result.running] == ["0.1"]


@pytest.mark.parametrize("phase", ["Completed", "Failed", "Stopped", "Pending"])
def test_a_flow_not_running_cannot_be_stopped(phase):
    jobs, snaps = snaps_for(spec(leaf("a")), a="completed")
    with pytest.raises(StopRefused, match="only a Submitted or Running flow"):
        plan_stop(phase, jobs, snaps)


def test_readd_builds_removed_subtrees_and_links_the_kept_children():
    flow = spec(
        node(
            "p",
            [
                leaf("done"),
                leaf("ran", {"attempts": 2}),
                node("m", [leaf("c"), leaf("x")]),
                leaf("z"),
            ],
        )
    )
    jobs = plan(flow, UID)
    states = {"p": "unknown", "done": "completed", "ran": "failed", "m": "unknown"}
    states |= {"c": "unknown", "x": "active", "z": "unknown"}
    snaps = {
        j.job_id: JobSnapshot(states[j.name], return_value=7 if j.name == "done" else None)
        for j in jobs
    }
    readd = plan_readd(flow, UID, "bull", jobs, snaps, {"0", "0.2", "0.2.0", "0.3"})
    assert len(readd.trees) == 1
    root = readd.trees[0]
    assert root["opts"]["jobId"] == f"bf-{UID}-0" and "parent" not in root["opts"]
    assert [c["name"] for c in root["children"]] == ["m", "z"]
    assert [c["name"] for c in root["children"][0]["children"]] == ["c"]
    assert readd.paths == ["0", "0.2", "0.2.0", "0.3"]
    assert [(p.path, c.path, v) for p, c, v in readd.processed] == [("0", "0.0", 7)]
    assert [(p.path, c.path) for p, c in readd.depends] == [("0", "0.1"), ("0.2", "0.2.1")]
    assert [j.path for j in readd.kept_failed] == ["0.1"]
    assert readd.must_wait == set()


def test_a_removed_subtree_under_a_kept_parent_links_to_it_and_waits_for_kept_children():
    flow = spec(node("p", [node("m", [leaf("busy")])]))
    jobs = plan(flow, UID)
    snaps = {
        jobs[0].job_id: JobSnapshot("active"),
        jobs[1].job_id: JobSnapshot("unknown"),
        jobs[2].job_id: JobSnapshot("active"),
    }
    readd = plan_readd(flow, UID, "pre", jobs, snaps, {"0.0"})
    assert readd.trees[0]["opts"]["parent"] == {"id": f"bf-{UID}-0", "queue": "pre:q"}
    assert "children" not in readd.trees[0]
    assert readd.must_wait == {f"bf-{UID}-0.0"}  # added as a parent: it waits for busy
