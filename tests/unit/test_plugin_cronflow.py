"""`kubectl bullflow trigger` and `tree cronflow/NAME`: parsing and the pure helpers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bullflow.cli.cronflows import last_run, manual_run
from bullflow.cli.operations import OperationError
from bullflow.cli.plugin import parse_args


def test_trigger_parses_like_the_other_commands() -> None:
    args = parse_args(["trigger", "nightly", "-n", "etl"])
    assert (args.command, args.cronflow, args.namespace) == ("trigger", "nightly", "etl")
    assert parse_args(["tree", "cronflow/nightly"]).flow == "cronflow/nightly"


def run(name: str, created: str) -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created}}


def test_last_run_is_the_newest_and_no_runs_is_an_error() -> None:
    runs = [run("n-100", "2026-01-01T00:00:00Z"), run("n-manual-abcde", "2026-01-02T00:00:00Z")]
    assert last_run(runs, "n") == "n-manual-abcde"
    with pytest.raises(OperationError, match="has no runs"):
        last_run([], "n")


def test_manual_run_uses_the_template_with_the_time_of_now() -> None:
    cronflow = {
        "metadata": {"name": "nightly", "namespace": "etl", "uid": "u"},
        "spec": {
            "schedule": "@daily",
            "timeZone": "America/New_York",
            "flowTemplate": {"spec": {"root": {"name": "r-${schedule.date}", "queueName": "q"}}},
        },
    }
    body = manual_run(cronflow, datetime(2026, 1, 2, 3, 0, tzinfo=UTC), suffix="x1y2z")
    assert body["metadata"]["name"] == "nightly-manual-x1y2z"
    assert body["metadata"]["annotations"]["bullflow.io/trigger"] == "manual"
    assert body["metadata"]["labels"]["bullflow.io/cronflow"] == "nightly"
    assert body["spec"]["root"]["name"] == "r-2026-01-01"  # still the 1st in New York
