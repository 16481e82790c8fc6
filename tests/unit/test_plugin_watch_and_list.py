"""`kubectl bullflow tree --watch` and `list`: frames fed by a list of statuses, TTY vs plain
output, and every line within 80 columns however long the names and values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bullflow.cli.listing import format_age, render_list
from bullflow.cli.tree import render_tree
from bullflow.cli.watch import CLEAR, watch_frames

NOW = datetime(2026, 1, 1, 10, 5, 0, tzinfo=UTC)
LONG = "extract-the-whole-customer-database-from-the-legacy-warehouse-" * 3


def node(path: str, name: str, state: str, **extra: Any) -> dict[str, Any]:
    base = {"path": path, "name": name, "queue": "etl", "jobId": f"u-{path}", "state": state}
    return base | extra


def flow(phase: str, nodes: list[dict[str, Any]], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "etl",
            "namespace": "data",
            "creationTimestamp": "2026-01-01T10:00:00Z",
        },
        "status": {"phase": phase, "submittedAt": "2026-01-01T10:00:00Z", "nodes": nodes} | status,
    }


SEQUENCE = [
    flow("Submitted", [node("0", "load", "waiting-children"), node("0.0", "extract", "waiting")]),
    flow("Running", [node("0", "load", "waiting-children"), node("0.0", "extract", "active")]),
    flow(
        "Completed",
        [
            node("0", "load", "completed", returnValue=7, attemptsMade=1),
            node("0.0", "extract", "completed", returnValue=7, attemptsMade=1),
        ],
        finishedAt="2026-01-01T10:00:09Z",
        progress="2/2",
    ),
]


def frames(flows: list[dict[str, Any]], tty: bool, forever: bool = False) -> list[str]:
    return list(watch_frames(flows, tty=tty, forever=forever, now=lambda: NOW))


def test_watch_not_a_tty_prints_plain_frames_separated_by_a_blank_line() -> None:
    same_status_new_annotation = {**SEQUENCE[1], "metadata": {**SEQUENCE[1]["metadata"], "x": 1}}
    out = frames([SEQUENCE[0], SEQUENCE[1], same_status_new_annotation, SEQUENCE[2]], tty=False)
    assert len(out) == 3  # the annotation-only change draws nothing
    assert out[0].startswith("Name:") and all(f.startswith("\nName:") for f in out[1:])
    text = "".join(out)
    assert "\x1b" not in text and not any(ord(c) > 127 for c in text), text
    phases = [line for line in text.splitlines() if line.startswith("Phase:")]
    assert phases == ["Phase:       Submitted", "Phase:       Running", "Phase:       Completed"]
    assert "`-extract" in out[1] and "active" in out[1]
    assert "Duration:    9s" in out[2] and "Duration:    5m0s" in out[1]


def test_watch_on_a_tty_redraws_in_place_with_glyphs() -> None:
    out = frames(SEQUENCE, tty=True)
    assert len(out) == 3 and all(f.startswith(CLEAR) and f.count(CLEAR) == 1 for f in out)
    assert "Phase:       ● Running" in out[1] and "└─● extract" in out[1]
    assert "Phase:       ✔ Completed" in out[2]
    ascii = list(watch_frames(SEQUENCE, tty=True, now=lambda: NOW, ascii=True))
    assert "Phase:       OK Completed" in ascii[2] and "`-OK extract" in ascii[2]
    assert ascii[2].startswith(CLEAR) and ascii[2][len(CLEAR) :].isascii()


def test_watch_ends_at_a_finished_phase_unless_forever() -> None:
    stopped = flow("Stopped", [node("0", "load", "waiting-children")])
    after = flow("Running", [node("0", "load", "active")])
    assert len(frames([SEQUENCE[1], stopped, after], tty=False)) == 2
    assert len(frames([SEQUENCE[1], stopped, after], tty=False, forever=True)) == 3
    failed = flow("Failed", [node("0", "load", "failed", failedReason="disk full")])
    out = frames([failed, after], tty=False)
    assert len(out) == 1 and "disk full" in out[0]


def test_watch_from_an_empty_status() -> None:
    fresh = {"metadata": {"name": "etl", "namespace": "data"}}
    out = frames([fresh, SEQUENCE[0]], tty=False)
    assert out[0].splitlines()[2] == "Phase:       Pending" and len(out) == 2


@pytest.mark.parametrize("style", ["unicode", "ascii", "plain"])
def test_tree_fits_80_columns_with_long_names_reasons_and_values(style: Any) -> None:
    deep = [node("0", LONG, "waiting-children", queue=LONG)]
    path = "0"
    for depth in range(12):
        path += ".0"
        deep.append(node(path, f"{LONG}-{depth}", "waiting-children", queue="q"))
    deep.append(node(path + ".1", LONG, "failed", failedReason=LONG, attemptsMade=1000))
    deep.append(node("0.1", "short", "completed", returnValue={"k": LONG}, truncated=True))
    failed = flow(
        "Failed",
        deep,
        conditions=[{"type": "Failed", "status": "True", "message": f"job failed: {LONG}"}],
    )
    failed["metadata"]["name"] = LONG
    text = render_tree(failed, now=NOW, style=style)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert any(line.startswith("Name:        extract-the") and line.endswith("…") for line in lines)
    row = next(line for line in lines if "failed  " in line)
    assert row.endswith("…") and row.split("  1000  ")[1].strip().startswith("extract-the-wh")
    truncated = next(line for line in lines if "short" in line)
    assert truncated.endswith("… (truncated)")


def test_node_durations_when_the_status_has_processed_and_finished_times() -> None:
    start = int(datetime(2026, 1, 1, 10, 0, tzinfo=UTC).timestamp() * 1000)
    timed = flow(
        "Running",
        [
            node("0", "load", "active", processedOn=start + 60_000),
            node("0.0", "extract", "completed", processedOn=start, finishedOn=start + 42_000),
        ],
    )
    lines = render_tree(timed, now=NOW, style="plain").splitlines()
    assert lines[-3].split() == ["STEP", "QUEUE", "STATE", "ATTEMPTS", "DURATION", "DETAILS"]
    assert lines[-2].split()[:5] == ["load", "etl", "active", "0", "4m0s"]
    assert lines[-1].split()[:5] == ["`-extract", "etl", "completed", "0", "42s"]
    without = render_tree(SEQUENCE[1], now=NOW).splitlines()
    assert "DURATION" not in without[-3]


def test_list_columns_age_duration_and_reason() -> None:
    ready = {"type": "Ready", "status": "False", "reason": "ChildFailed"}
    failed = flow("Failed", [], progress="1/2", finishedAt="2026-01-01T10:00:03Z")
    failed["status"]["conditions"] = [ready]
    running = flow("Running", [], progress="0/2")
    running["metadata"] = {**running["metadata"], "name": "etl-2"}
    pending = {"metadata": {"name": "new", "namespace": "data"}}
    assert render_list([failed, running, pending], NOW, all_namespaces=False).splitlines() == [
        "NAME   PHASE    PROGRESS  AGE  DURATION  REASON",
        "etl    Failed   1/2       5m   3s        ChildFailed",
        "etl-2  Running  0/2       5m   5m0s",
        "new    Pending  -         -    -",
    ]
    everywhere = render_list([failed], NOW, all_namespaces=True).splitlines()
    assert everywhere[0].split() == ["NAMESPACE", "NAME", *everywhere[0].split()[2:]]
    assert everywhere[1].split()[:2] == ["data", "etl"]


def test_list_fits_80_columns() -> None:
    long = flow("Failed", [], progress="19999/20000")
    long["metadata"] = {**long["metadata"], "name": LONG, "namespace": LONG}
    long["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "R" * 90}]
    for everywhere in (False, True):
        lines = render_list([long], NOW, all_namespaces=everywhere).splitlines()
        assert max(len(line) for line in lines) <= 80, lines
        assert lines[1].startswith("extract-the…") and "19999/20000" in lines[1]
        assert lines[1].endswith("RRR…")
    # A long namespace beside a short name and reason is cut only as far as needed.
    long["metadata"]["name"] = "etl"
    long["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "Failed"}]
    line = render_list([long], NOW, all_namespaces=True).splitlines()[1]
    assert len(line) == 80 and line.startswith(LONG[:29] + "…  etl   Failed  19999")


@pytest.mark.parametrize(
    ("seconds", "age"),
    [
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (20 * 3600, "20h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (12 * 86400, "12d"),
    ],
)
def test_age(seconds: int, age: str) -> None:
    assert format_age(timedelta(seconds=seconds).total_seconds()) == age
