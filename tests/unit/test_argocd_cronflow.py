"""The Argo CD health check of CronFlow, run by a real Lua 5.1 (lupa), on statuses shaped like
the operator's (controllers/cronflow.py), and its copy in argocd/argocd-cm.yaml."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.test_argocd_health import HEALTH, ROOT, argocd_health, cond


def cronflow(status: dict[str, Any] | None, suspend: bool = False, generation: int = 1) -> dict:
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "CronFlow",
        "metadata": {"name": "nightly", "generation": generation},
        "spec": {"schedule": "@daily", "suspend": suspend},
        "status": status,
    }


def ready(*conditions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"observedGeneration": 1, "conditions": list(conditions), **fields}


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        (cronflow(None), "Progressing", "Waiting for the bullflow operator"),
        (
            cronflow(ready(cond("Ready", "True", "Scheduled")), generation=2),
            "Progressing",
            "Waiting for the operator to observe generation 2",
        ),
        (
            cronflow(
                ready(
                    cond("Ready", "True", "Scheduled"),
                    nextScheduleTime="2026-01-02T00:00:00Z",
                    lastScheduleTime="2026-01-01T00:00:00Z",
                    activeCount=1,
                )
            ),
            "Healthy",
            "Next run 2026-01-02T00:00:00Z; last run 2026-01-01T00:00:00Z; 1 active",
        ),
        (
            cronflow(ready(cond("Ready", "True", "Scheduled"), activeCount=0)),
            "Healthy",
            "Next run not scheduled",
        ),
        (
            cronflow(ready(cond("Ready", "False", "InvalidSchedule", "invalid schedule 'x'"))),
            "Degraded",
            "InvalidSchedule: invalid schedule 'x'",
        ),
        (
            cronflow(ready(cond("Ready", "False", "TemplateNotFound", "FlowTemplate 'r'"))),
            "Degraded",
            "TemplateNotFound: FlowTemplate 'r'",
        ),
        (
            cronflow(ready(cond("Ready", "True", "Suspended")), suspend=True),
            "Suspended",
            "Suspended: no new runs",
        ),
    ],
)
def test_cronflow_health(obj: dict[str, Any], status: str, message: str) -> None:
    assert argocd_health("CronFlow", obj) == {"status": status, "message": message}


def test_argocd_cm_snippet_embeds_the_cronflow_script() -> None:
    cm = yaml.safe_load((ROOT / "argocd" / "argocd-cm.yaml").read_text())
    key = "resource.customizations.health.bullflow.io_CronFlow"
    assert cm["data"][key] == (HEALTH / "CronFlow" / "health.lua").read_text()
