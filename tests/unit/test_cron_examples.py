"""examples/cron/*.yaml are valid CronFlows whose schedules and zones parse, and the Flow each
creates substitutes the scheduled date."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from bullflow.models.cronflow import CronFlowSpec
from bullflow.services.cron_schedule import parse_schedule, schedule_variables
from bullflow.services.cronflow_policy import build_flow

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "cron").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_cronflow(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "CronFlow"
    spec = CronFlowSpec.model_validate(doc["spec"])
    schedule = parse_schedule(spec.schedule, spec.time_zone)
    at = schedule.next_after(datetime(2026, 6, 1, tzinfo=UTC))
    doc["metadata"].update(namespace="ns", uid="u")
    flow = build_flow(doc, "run", schedule_variables(at, schedule.zone))
    assert "2026-06-01" in yaml.safe_dump(flow["spec"])
    assert "${" not in yaml.safe_dump(flow["spec"])


def test_both_examples_exist() -> None:
    assert [p.name for p in EXAMPLES] == ["daily-report.yaml", "nightly-etl.yaml"]
