"""Argo CD health of a Stopped Flow: Suspended (stopped on purpose, can be retried), with the
Stopped condition's who/when message."""

from __future__ import annotations

from tests.unit.test_argocd_health import argocd_health, cond, flow


def test_a_stopped_flow_is_suspended_with_who_and_when():
    message = "stopped (by ann at 2026-12-03T10:00:00Z): 3 jobs not yet started removed, ..."
    obj = flow("Stopped", cond("Stopped", "True", "Stopped", message), progress="1/4")
    assert argocd_health("Flow", obj) == {"status": "Suspended", "message": message}


def test_a_stopped_flow_without_its_condition_still_says_stopped():
    assert argocd_health("Flow", flow("Stopped", progress="1/4")) == {
        "status": "Suspended",
        "message": "Stopped (1/4 jobs done)",
    }


def test_a_flow_still_stopping_is_progressing():
    obj = flow("Running", cond("Stopped", "False", "Stopping", "stopped (x): waiting"))
    assert argocd_health("Flow", obj)["status"] == "Progressing"
