"""`kubectl bullflow retry/stop/resubmit`: the checks before writing, the annotations written,
the reading of the operator's answer, the resubmitted object, and the arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bullflow.cli import operations as ops
from bullflow.cli.plugin import parse_args

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
SPEC = {
    "root": {
        "name": "load",
        "queueName": "etl",
        "children": [
            {"name": "extract", "queueName": "etl"},
            {"name": "extract", "queueName": "etl-2"},
            {"name": "transform", "queueName": "etl"},
        ],
    },
    "idempotencyKey": "etl-2026-03-04",
}


def flow(phase: str | None, truncated: bool = False, **extra: Any) -> dict[str, Any]:
    nodes = [
        {"path": "0", "name": "load", "state": "waiting-children"},
        {"path": "0.0", "name": "extract", "state": "completed"},
        {"path": "0.1", "name": "extract", "state": "completed"},
        {"path": "0.2", "name": "transform", "state": "failed"},
    ]
    status = {"phase": phase, "nodes": nodes[3:] if truncated else nodes}
    if truncated:
        status["nodesTruncated"] = True
    return {
        "metadata": {"name": "etl", "namespace": "data", "resourceVersion": "17"} | extra,
        "spec": SPEC,
        "status": status if phase else None,
    }


def test_retry_annotations_of_a_failed_flow() -> None:
    token = ops.retry_token(NOW, "a1b2c3")
    assert token == "2026-03-04T05:06:07Z/a1b2c3"
    assert ops.retry_annotations(flow("Failed"), [], False, token) == {
        "bullflow.io/retry": token,
        "bullflow.io/retry-nodes": "",
        "bullflow.io/retry-reset-attempts": "false",
    }
    picked = ops.retry_annotations(flow("Stopped"), ["transform", "0.1", "0.2"], True, token)
    assert picked["bullflow.io/retry-nodes"] == "0.2,0.1"
    assert picked["bullflow.io/retry-reset-attempts"] == "true"
    assert ops.retry_token(NOW) != ops.retry_token(NOW)


@pytest.mark.parametrize("phase", ["Completed", "Running", "Submitted", "Pending", None])
def test_retry_refuses_a_flow_that_did_not_fail_or_stop(phase: str | None) -> None:
    with pytest.raises(ops.OperationError) as err:
        ops.retry_annotations(flow(phase), [], False, "t")
    assert str(err.value) == (
        f"flow/etl is {phase or 'Pending'}: only a Failed or Stopped flow can be retried"
    )


def test_retry_nodes_by_path_or_name_and_unknown_ones() -> None:
    with pytest.raises(ops.OperationError, match=r"flow/etl has no node with path or name '0\.7'"):
        ops.retry_annotations(flow("Failed"), ["0.7"], False, "t")
    assert ops.resolve_nodes(flow("Failed"), ["extract", "0.1"]) == ["0.0", "0.1"]
    # A large flow's status lists only some jobs: the spec says which exist.
    assert ops.resolve_nodes(flow("Failed", truncated=True), ["0.0", "load"]) == ["0.0", "0"]
    with pytest.raises(ops.OperationError):
        ops.resolve_nodes(flow("Failed", truncated=True), ["nope"])


def test_roots_are_numbered_from_zero() -> None:
    many = {"metadata": {"name": "m"}, "spec": {"roots": [SPEC["root"], {"name": "solo"}]}}
    assert ops.resolve_nodes(many, ["solo", "0.2"]) == ["1", "0.2"]


def test_stop() -> None:
    assert ops.stop_annotation(flow("Running"), "alice", NOW) == {
        "bullflow.io/stop": "by alice at 2026-03-04T05:06:07Z"
    }
    assert ops.stop_annotation(flow(None), "alice", NOW)  # not submitted yet: can be stopped
    for phase in ("Completed", "Failed", "Stopped"):
        with pytest.raises(ops.OperationError, match=f"flow/etl is {phase}: only an unfinished"):
            ops.stop_annotation(flow(phase), "alice", NOW)


def test_merge_patch_carries_the_version_checked() -> None:
    patch = ops.merge_patch({"bullflow.io/stop": "x"}, "17")
    assert patch == {
        "metadata": {"annotations": {"bullflow.io/stop": "x"}, "resourceVersion": "17"}
    }


def with_status(phase: str, handled: str | None, retried: dict[str, Any] | None) -> dict:
    status: dict[str, Any] = {"phase": phase, "conditions": [retried] if retried else []}
    if handled:
        status["lastHandledRetry"] = handled
    return {"metadata": {"name": "etl"}, "status": status}


def test_retry_outcome() -> None:
    applied = {"type": "Retried", "status": "True", "reason": "Applied", "message": "2 jobs"}
    refused = {"type": "Retried", "status": "False", "reason": "RetryRefused", "message": "gone"}
    pending = {"type": "Retried", "status": "False", "reason": "RetryPending", "message": "w"}
    assert ops.retry_outcome(with_status("Failed", None, None), "t1") is None
    assert ops.retry_outcome(with_status("Failed", "t0", refused), "t1") is None
    assert ops.retry_outcome(with_status("Running", "t1", applied), "t1") == ops.Outcome(
        True, "flow/etl retry applied: phase Running"
    )
    assert ops.retry_outcome(with_status("Failed", "t1", refused), "t1") == ops.Outcome(
        False, "flow/etl: gone"
    )
    assert ops.retry_outcome(with_status("Failed", "t0", pending), "t1") is None


def test_stop_outcome() -> None:
    stopped = {"type": "Stopped", "status": "True", "message": "by alice at T"}
    stopping = {"type": "Stopped", "status": "False", "reason": "Stopping", "message": "1 runs"}
    refused = {"type": "Stopped", "status": "False", "reason": "StopRefused", "message": "no"}
    assert ops.stop_outcome(with_status("Running", None, None), "v") is None
    assert ops.stop_outcome(with_status("Running", None, stopping), "v") is None
    assert ops.stop_outcome(with_status("Stopped", None, stopped), "v") == ops.Outcome(
        True, "flow/etl stopped: by alice at T"
    )
    done = ops.stop_outcome(with_status("Completed", None, None), "v")
    assert done == ops.Outcome(False, "flow/etl ended Completed before the stop took effect")
    handled = with_status("Running", None, refused)
    handled["status"]["lastHandledStop"] = "v"
    assert ops.stop_outcome(handled, "v") == ops.Outcome(False, "flow/etl: no")
    assert ops.stop_outcome(handled, "an older one") is None


def test_resubmitted_keeps_spec_and_labels_drops_key_status_and_bullflow_annotations() -> None:
    old = flow(
        "Failed",
        uid="u-1",
        labels={"team": "data"},
        annotations={
            "bullflow.io/retry": "t",
            "bullflow.io/submitted": "x",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "argocd.argoproj.io/tracking-id": "app:bullflow.io/Flow:data/etl",
            "owner": "team-data",
        },
        finalizers=["bullflow.io/cleanup"],
    )
    body, notes = ops.resubmitted(old, None)
    assert body == {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {
            "generateName": "etl-",
            "labels": {"team": "data"},
            "annotations": {"owner": "team-data"},
        },
        "spec": {k: v for k, v in SPEC.items() if k != "idempotencyKey"},
    }
    assert "idempotencyKey" in SPEC  # the old object is not changed
    assert len(notes) == 1 and "'etl-2026-03-04' is not copied" in notes[0]
    named, notes = ops.resubmitted({"metadata": {"name": "x"}, "spec": {"root": {}}}, "y")
    assert named["metadata"] == {"name": "y"} and notes == []


def test_arguments() -> None:
    args = parse_args(["retry", "etl", "-n", "data", "--node", "0.1", "--node", "load", "--wait"])
    assert (args.flow, args.namespace, args.node, args.wait, args.reset_attempts) == (
        "etl",
        "data",
        ["0.1", "load"],
        True,
        False,
    )
    assert args.timeout == 300
    assert parse_args(["stop", "etl", "--wait", "--timeout", "5"]).timeout == 5
    assert parse_args(["resubmit", "etl", "--name", "etl-again"]).name == "etl-again"
    assert parse_args(["list", "-A"]).all_namespaces
    watch = parse_args(["tree", "etl", "-w", "--forever"])
    assert watch.watch and watch.forever


@pytest.mark.parametrize(
    "argv",
    [
        ["retry"],
        ["stop"],
        ["resubmit"],
        ["tree", "etl", "--forever"],
        ["list", "-A", "-n", "data"],
        ["retry", "etl", "--wait", "--timeout", "0"],
        ["list", "etl"],
        ["nuke", "etl"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_retry_by_name_of_a_large_templated_flow_reads_the_recorded_tree() -> None:
    """A large flow's status lists only some jobs, and a templated Flow's spec has no tree:
    the names come from the template its status recorded, not from the live template."""
    from bullflow.models.flow import FlowSpec
    from bullflow.services.flow_from_template import record

    template = {
        "metadata": {"name": "fan", "uid": "u-1", "generation": 3},
        "spec": {
            "parameters": [{"name": "items", "type": "array", "required": True}],
            "root": {
                "name": "reduce",
                "queueName": "q",
                "children": [
                    {"name": "map-${item}", "queueName": "q", "withItems": "${params.items}"}
                ],
            },
        },
    }
    spec = {"templateRef": {"name": "fan"}, "arguments": {"items": ["a", "b"]}}
    _, recorded = record(template, FlowSpec.model_validate(spec), 100)
    flow = {
        "metadata": {"name": "f", "namespace": "ns"},
        "spec": spec,
        "status": {
            "phase": "Failed",
            "nodesTruncated": True,
            "nodes": [{"path": "0.1", "name": "map-b", "state": "failed"}],
            "template": recorded.model_dump(by_alias=True, exclude_none=True),
        },
    }
    assert ops.resolve_nodes(flow, ["map-a", "reduce"]) == ["0.0", "0"]
