"""`kubectl bullflow tree` on a stopped flow: the jobs the stop removed read as such in every
style (a marker apart from waiting and failed, and what happened to them)."""

from __future__ import annotations

from typing import Any

from bullflow.cli.tree import REMOVED_DETAIL, render_tree


def stopped_flow() -> dict[str, Any]:
    def node(path: str, name: str, state: str, **extra: Any) -> dict[str, Any]:
        return {"path": path, "name": name, "queue": "q", "state": state, **extra}

    return {
        "metadata": {"name": "etl", "namespace": "data"},
        "status": {
            "phase": "Stopped",
            "conditions": [
                {"type": "Stopped", "status": "True", "reason": "Stopped", "message": "by bo"}
            ],
            "nodes": [
                node("0", "load", "removed"),
                node("0.0", "extract", "completed", attemptsMade=1, returnValue=7),
                node("0.1", "transform", "removed"),
            ],
        },
    }


def job_line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if f"{name} " in line and " q " in line)


def test_removed_jobs_have_their_own_marker_and_say_what_happened() -> None:
    for style, mark in (("unicode", "○ "), ("ascii", "-- ")):
        out = render_tree(stopped_flow(), style=style)  # type: ignore[arg-type]
        line = job_line(out, "transform")
        assert f"{mark}transform" in line and "removed" in line
        assert line.endswith(REMOVED_DETAIL), line
        done = job_line(out, "extract")
        assert f"{mark}extract" not in done and done.endswith("7")


def test_plain_style_says_removed_in_words_and_fits_the_width() -> None:
    out = render_tree(stopped_flow(), style="plain")
    line = job_line(out, "load")
    assert line.startswith("load ") and " removed " in line and line.endswith(REMOVED_DETAIL)
    narrow = render_tree(stopped_flow(), style="plain", width=50)
    assert job_line(narrow, "load").endswith("…")
    assert all(len(row) <= 50 for row in narrow.splitlines())
