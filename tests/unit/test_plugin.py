"""`kubectl bullflow tree`: the pure rendering of a Flow as a tree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bullflow.cli.plugin import format_duration, parse_args, render_tree


def node(path: str, name: str, queue: str, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "name": name,
        "queue": queue,
        "jobId": f"u:{path}",
        "state": state,
        "attemptsMade": extra.pop("attempts", 1 if state in ("completed", "failed") else 0),
        **extra,
    }


def flow(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "basic", "namespace": "team-a"}, "status": status}


COMPLETED = flow(
    {
        "phase": "Completed",
        "progress": "3/3",
        "totalNodes": 3,
        "result": 42,
        "submittedAt": "2026-01-01T10:00:00Z",
        "finishedAt": "2026-01-01T10:01:05Z",
        "conditions": [{"type": "Failed", "status": "False", "reason": "NotFailed"}],
        "nodes": [
            node("0", "total", "basic-parent", "completed", returnValue=42),
            node("0.0", "part-a", "basic-child", "completed", returnValue=2),
            node("0.1", "part-b", "basic-child", "completed", returnValue=40),
        ],
    }
)


def test_completed_flow() -> None:
    assert render_tree(COMPLETED) == (
        "Name:        basic\n"
        "Namespace:   team-a\n"
        "Phase:       ✔ Completed\n"
        "Progress:    3/3\n"
        "Duration:    1m5s\n"
        "Result:      42\n"
        "\n"
        "STEP        QUEUE         STATE      ATTEMPTS  DETAILS\n"
        "✔ total     basic-parent  completed  1         42\n"
        "├─✔ part-a  basic-child   completed  1         2\n"
        "└─✔ part-b  basic-child   completed  1         40\n"
    )


def test_failed_nested_flow_ascii() -> None:
    failed = flow(
        {
            "phase": "Failed",
            "progress": "1/4",
            "submittedAt": "2026-01-01T10:00:00Z",
            "finishedAt": "2026-01-01T10:00:02Z",
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "ChildFailed",
                    "message": "job 0.1 (bad-child) failed: card declined",
                }
            ],
            "nodes": [
                node("0", "parent", "p", "waiting-children"),
                node("0.0", "mid", "c", "waiting-children"),
                node("0.0.0", "leaf", "c", "completed", returnValue={"ok": True}),
                node("0.1", "bad-child", "c", "failed", attempts=3, failedReason="card declined"),
            ],
        }
    )
    out = render_tree(failed, style="ascii")
    assert "Phase:       XX Failed\n" in out
    assert "Message:     job 0.1 (bad-child) failed: card declined\n" in out
    assert "Duration:    2s\n" in out
    rows = out.split("\n\n", 1)[1].splitlines()
    assert [r.split("  ")[0].rstrip() for r in rows] == [
        "STEP",
        "<< parent",
        "|-<< mid",
        "| `-OK leaf",
        "`-XX bad-child",
    ]
    assert rows[4].split()[-3:] == ["3", "card", "declined"]
    assert rows[3].endswith('{"ok":true}')


def test_running_flow_duration_from_now_and_long_values_cut() -> None:
    running = flow(
        {
            "phase": "Running",
            "progress": "0/2",
            "submittedAt": "2026-01-01T10:00:00Z",
            "nodes": [
                node("0", "root", "q", "waiting-children"),
                node("0.0", "child", "q", "active", returnValue=None),
            ],
        }
    )
    now = datetime(2026, 1, 1, 11, 2, 3, tzinfo=UTC)
    out = render_tree(running, now=now)
    assert "Phase:       ● Running\n" in out and "Duration:    1h2m3s\n" in out
    assert "└─● child" in out
    long = flow(
        {
            "phase": "Completed",
            "nodes": [node("0", "r", "q", "completed", returnValue="x" * 500, truncated=True)],
        }
    )
    detail = render_tree(long).splitlines()[-1]
    assert detail.endswith("x… (truncated)")
    assert len(detail) < 120


def test_roots_and_truncated_listing() -> None:
    big = flow(
        {
            "phase": "Running",
            "progress": "9990/10000",
            "totalNodes": 10000,
            "nodesTruncated": True,
            "nodes": [
                node("0", "root-a", "q", "waiting-children"),
                node("0.4.7", "deep-failed", "q", "failed", failedReason="boom"),
                node("1.2", "orphan-active", "q", "active"),
            ],
        }
    )
    out = render_tree(big)
    assert "only failed/active jobs are listed (3 of 10000)" in out
    steps = [line.split("  ")[0] for line in out.split("\n\n", 1)[1].splitlines()[1:]]
    assert steps == ["⧗ root-a", "└─✖ deep-failed", "● orphan-active"]


def test_pending_without_status() -> None:
    out = render_tree({"metadata": {"name": "x", "namespace": "n"}})
    assert out == "Name:        x\nNamespace:   n\nPhase:       ◷ Pending\n"
    invalid = render_tree(
        flow(
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "InvalidSpec",
                        "message": "too big",
                    }
                ],
            }
        )
    )
    assert "Message:     InvalidSpec: too big" in invalid


def test_ignored_failures_detail() -> None:
    out = render_tree(
        flow(
            {
                "phase": "Completed",
                "nodes": [
                    node(
                        "0",
                        "parent",
                        "q",
                        "completed",
                        returnValue={"a": 1},
                        ignoredFailures=[
                            {"path": "0.1", "name": "charge", "key": "b:q:1", "reason": "no"}
                        ],
                    )
                ],
            }
        )
    )
    assert '{"a":1} (1 ignored child failure: charge)' in out


def test_child_values_are_shown_by_the_childrens_names() -> None:
    values = [
        {"path": "0.0", "name": "part-a", "key": "bull:c:bf-u-0.0", "value": 2},
        {"path": "0.1", "name": "part-b", "key": "bull:c:bf-u-0.1", "value": 40},
        {"key": "bull:other:x", "value": {"k": "v"}},
    ]
    parent = node("0", "total", "p", "completed", returnValue=42, childrenValues=values)
    out = render_tree(flow({"phase": "Completed", "nodes": [parent]}), style="ascii", width=120)
    assert '42 <- part-a=2, part-b=40, bull:other:x={"k":"v"}' in out
    # A status written by an older operator: BullMQ's own map, shown by key.
    old = node("0", "total", "p", "waiting-children", childrenValues={"bull:c:1": 2})
    assert "<- bull:c:1=2" in render_tree(flow({"phase": "Running", "nodes": [old]}))
    many = [{"name": f"part-{i}", "key": f"k{i}", "value": i} for i in range(40)]
    wide = node("0", "total", "p", "waiting-children", childrenValues=many)
    line = render_tree(flow({"phase": "Running", "nodes": [wide]})).splitlines()[-1]
    assert line.endswith("…") and "<- part-0=0, part-1=1" in line


def test_no_workers_is_said_while_the_flow_waits() -> None:
    ready = {"type": "Ready", "status": "False", "reason": "NoWorkers", "message": "no worker: q"}
    out = render_tree(flow({"phase": "Submitted", "conditions": [ready]}))
    assert "Message:     NoWorkers: no worker: q" in out


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.6, "1m0s"), (3600, "1h0m0s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_args() -> None:
    args = parse_args(["tree", "basic", "-n", "team-a", "--ascii"])
    assert (args.command, args.flow, args.namespace, args.ascii) == (
        "tree",
        "basic",
        "team-a",
        True,
    )
    with pytest.raises(SystemExit):
        parse_args(["tree"])


def test_stopped_and_retried_flows_say_so() -> None:
    stopped = flow(
        {
            "phase": "Stopped",
            "conditions": [
                {"type": "Stopped", "status": "True", "reason": "Stopped", "message": "by bo at T"}
            ],
            "nodes": [node("0", "root", "q", "removed"), node("0.0", "c", "q", "completed")],
        }
    )
    out = render_tree(stopped)
    assert "Phase:       ■ Stopped\n" in out and "Message:     by bo at T\n" in out
    assert "○ root" in out and "Phase:       Stopped\n" in render_tree(stopped, style="plain")
    retried = flow(
        {
            "phase": "Failed",
            "retryCount": 23,
            "retries": [{"value": "t", "time": "2026-01-01T10:00:00Z", "nodes": ["0.1"]}],
            "conditions": [
                {"type": "Retried", "status": "False", "reason": "RetryRefused", "message": "no"}
            ],
        }
    )
    out = render_tree(retried)
    assert "Retried:     23 times, last at 2026-01-01T10:00:00Z\n" in out
    assert "Message:     no\n" in out
