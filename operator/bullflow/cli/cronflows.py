"""The plugin's CronFlow helpers (pure): a CronFlow's last run, and a manual run of it."""

from __future__ import annotations

import secrets
import string
from datetime import datetime
from typing import Any

from ..services.cron_schedule import parse_zone, schedule_variables
from ..services.cronflow_policy import build_flow
from .operations import OperationError

TRIGGER_ANNOTATION = "bullflow.io/trigger"
_SUFFIX = string.ascii_lowercase + string.digits


def last_run(runs: list[dict[str, Any]], cronflow: str) -> str:
    """The name of the newest Flow of the CronFlow (scheduled or manual)."""
    if not runs:
        raise OperationError(f"cronflow {cronflow!r} has no runs (yet)")
    newest = max(runs, key=lambda f: (f["metadata"].get("creationTimestamp") or "", _name(f)))
    return _name(newest)


def _name(flow: dict[str, Any]) -> str:
    return str(flow["metadata"]["name"])


def manual_run(cronflow: dict[str, Any], now: datetime, suffix: str | None = None) -> dict:
    """The Flow `kubectl bullflow trigger` creates: the CronFlow's template with the schedule
    variables of `now`, named CRONFLOW-manual-xxxxx, annotated as a manual run. The operator
    counts it among the CronFlow's runs (concurrency, history) like a scheduled one."""
    tail = suffix or "".join(secrets.choice(_SUFFIX) for _ in range(5))
    variables = schedule_variables(now, parse_zone(cronflow["spec"].get("timeZone")))
    body = build_flow(cronflow, f"{cronflow['metadata']['name']}-manual-{tail}", variables)
    body["metadata"]["annotations"][TRIGGER_ANNOTATION] = "manual"
    return body
