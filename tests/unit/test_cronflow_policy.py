"""CronFlow decisions: concurrency, history pruning, substitution, the Flow built per run."""

from __future__ import annotations

from typing import Any

import pytest

from bullflow.models.cronflow import CronFlowSpec
from bullflow.services.cronflow_policy import (
    CRONFLOW_LABEL,
    build_flow,
    can_stop,
    concurrency_action,
    history_to_prune,
    is_active,
    last_successful_time,
)
from bullflow.services.template_expansion import PlaceholderError


def flow(name: str, phase: str | None = None, finished: str | None = None) -> dict[str, Any]:
    status = {"phase": phase, "finishedAt": finished} if phase else None
    return {"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": status}  # fmt: skip


def test_active_means_not_ended() -> None:
    assert is_active(flow("a")) and is_active(flow("b", "Running"))
    assert not any(is_active(flow("c", p)) for p in ("Completed", "Failed", "Stopped"))


@pytest.mark.parametrize(
    ("policy", "active", "action"),
    [("Allow", 1, "create"), ("Forbid", 0, "create"), ("Forbid", 1, "skip"),
     ("Replace", 1, "replace"), ("Replace", 0, "create")],
)  # fmt: skip
def test_concurrency(policy: str, active: int, action: str) -> None:
    assert concurrency_action(policy, [flow("x", "Running")] * active) == action


def test_only_submitted_flows_are_stopped_others_deleted() -> None:
    assert can_stop(flow("a", "Running")) and can_stop(flow("a", "Submitted"))
    assert not can_stop(flow("a")) and not can_stop(flow("a", "Pending"))


def test_history_prunes_oldest_of_each_outcome_stopped_counts_as_failed() -> None:
    flows = [
        flow("ok1", "Completed", "2026-01-01T00:00:01Z"),
        flow("ok3", "Completed", "2026-01-01T00:00:03Z"),
        flow("ok2", "Completed", "2026-01-01T00:00:02Z"),
        flow("bad1", "Failed", "2026-01-01T00:00:01Z"),
        flow("stop2", "Stopped", "2026-01-01T00:00:02Z"),
        flow("running", "Running"),
    ]
    assert history_to_prune(flows, 2, 1) == ["ok1", "bad1"]
    assert history_to_prune(flows, 0, 0) == ["ok1", "ok2", "ok3", "bad1", "stop2"]
    assert history_to_prune(flows, 3, 2) == []


def test_last_successful_time_keeps_the_latest() -> None:
    flows = [
        flow("a", "Completed", "2026-01-01T00:00:05Z"),
        flow("b", "Failed", "2026-01-02T00:00:00Z"),
    ]
    assert last_successful_time(flows, "2026-01-01T00:00:01Z") == "2026-01-01T00:00:05Z"
    assert last_successful_time([], "2026-01-01T00:00:01Z") == "2026-01-01T00:00:01Z"


def test_build_flow_labels_owner_and_substituted_spec() -> None:
    cronflow = {
        "apiVersion": "bullflow.io/v1alpha1",
        "metadata": {"name": "nightly", "namespace": "ns", "uid": "u-1"},
        "spec": {"schedule": "@daily", "flowTemplate": {
            "metadata": {"labels": {"team": "data"}},
            "spec": {"root": {"name": "report", "queueName": "q",
                              "data": {"d": "${schedule.date}", "n": "${schedule.unix}"}}},
        }},
    }  # fmt: skip
    CronFlowSpec.model_validate(cronflow["spec"])
    variables = {"date": "2026-01-02", "unix": 99, "time": "T"}
    built = build_flow(cronflow, "nightly-99", variables)
    meta = built["metadata"]
    assert meta["name"] == "nightly-99" and meta["namespace"] == "ns"
    assert meta["labels"] == {"team": "data", CRONFLOW_LABEL: "nightly",
                              "bullflow.io/scheduled-time": "99"}  # fmt: skip
    assert meta["ownerReferences"][0]["uid"] == "u-1"
    assert meta["ownerReferences"][0]["controller"] is True
    assert built["spec"]["root"]["data"] == {"d": "2026-01-02", "n": 99}  # a number stays one
    assert built["metadata"]["annotations"] == {"bullflow.io/scheduled-at": "T"}
    assert cronflow["spec"]["flowTemplate"]["spec"]["root"]["data"]["d"] == "${schedule.date}"


def test_build_flow_substitutes_template_arguments_and_rejects_unknown_placeholders() -> None:
    cronflow = {
        "metadata": {"name": "report", "namespace": "ns", "uid": "u"},
        "spec": {"flowTemplate": {"spec": {"templateRef": {"name": "t"},
                                           "arguments": {"day": "${schedule.date}"}}}},
    }  # fmt: skip
    built = build_flow(cronflow, "report-1", {"date": "2026-01-02", "unix": 1, "time": "T"})
    assert built["spec"] == {"templateRef": {"name": "t"}, "arguments": {"day": "2026-01-02"}}
    cronflow["spec"]["flowTemplate"]["spec"]["arguments"] = {"x": "${schedule.year}"}
    with pytest.raises(PlaceholderError):
        build_flow(cronflow, "report-1", {"date": "d", "unix": 1, "time": "T"})


def test_model_rejects_bad_input() -> None:
    base = {
        "schedule": "@daily",
        "flowTemplate": {"spec": {"root": {"name": "a", "queueName": "q"}}},
    }
    bad_fields: list[dict[str, Any]] = [
        {"schedule": "nope"},
        {"timeZone": "Nowhere/City"},
        {"successfulFlowsHistoryLimit": -1},
        {"concurrencyPolicy": "Sometimes"},
    ]
    for bad in bad_fields:
        with pytest.raises(ValueError):
            CronFlowSpec.model_validate({**base, **bad})
    assert CronFlowSpec.model_validate(base).successful_flows_history_limit == 3
