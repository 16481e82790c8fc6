"""The Argo CD health checks (argocd/health/**/health.lua) run by a real Lua 5.1 (lupa).

Flow statuses here are shaped like the operator's; tests/e2e/test_plugin_and_argocd_health.py
runs the same scripts on statuses that real flows produced. The WorkerPool statuses use the
condition types and reasons of operator/bullflow/controllers/workerpool.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "argocd" / "health" / "bullflow.io"


def argocd_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """What Argo CD would show for `obj`: {"status": ..., "message": ...}.

    Argo CD runs the script with gopher-lua (Lua 5.1) and the resource as the global `obj`;
    JSON nulls are absent keys.
    """
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items() if v is not None})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    lua.globals().obj = to_lua(obj)
    result = lua.execute((HEALTH / kind / "health.lua").read_text())
    out = dict(result.items())
    assert set(out) <= {"status", "message"}, out
    assert out["status"] in ("Healthy", "Progressing", "Degraded", "Suspended", "Missing"), out
    return out


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def flow(phase: str | None, *conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    status = None if phase is None else {"phase": phase, "conditions": list(conditions), **extra}
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": "f", "generation": 1},
        "spec": {},
        "status": status,
    }


def test_lua_is_5_1() -> None:
    from lupa import lua51

    assert lua51.LuaRuntime().lua_version == (5, 1)


def test_argocd_cm_snippet_embeds_the_scripts() -> None:
    cm = yaml.safe_load((ROOT / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    for kind in ("Flow", "WorkerPool"):
        key = f"resource.customizations.health.bullflow.io_{kind}"
        assert cm["data"][key] == (HEALTH / kind / "health.lua").read_text(), kind


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        (flow(None), "Progressing", "Waiting for the bullflow operator"),
        (flow("Pending", cond("Ready", "False", "NoWorkers", "x")), "Progressing", "Pending: x"),
        (
            flow(
                "Submitted",
                cond("Ready", "False", "Submitted", "jobs are waiting for workers"),
                progress="0/3",
            ),
            "Progressing",
            "Submitted (0/3 jobs done): jobs are waiting for workers",
        ),
        (
            flow(
                "Running",
                cond("Ready", "False", "Running", "1 active"),
                cond("WorkersAvailable", "False", "NoWorkers", "no BullMQ worker on q"),
                progress="1/3",
            ),
            "Progressing",
            "Running (1/3 jobs done): 1 active; no BullMQ worker on q",
        ),
        (
            flow(
                "Submitted",
                cond("Ready", "False", "NoWorkers", "no BullMQ worker on q"),
                cond("WorkersAvailable", "False", "NoWorkers", "no BullMQ worker on q"),
                progress="0/3",
            ),
            "Progressing",
            "Submitted (0/3 jobs done): no BullMQ worker on q",
        ),
        (
            flow("Completed", cond("Ready", "True", "Completed", "done"), progress="3/3"),
            "Healthy",
            "Completed (3/3 jobs done)",
        ),
        (
            flow(
                "Failed",
                cond("Failed", "True", "ChildFailed", "job 0.1 failed: card declined"),
                cond("Ready", "False", "ChildFailed", "job 0.1 failed: card declined"),
            ),
            "Degraded",
            "job 0.1 failed: card declined",
        ),
        (flow("Failed", progress="1/2"), "Degraded", "Failed (1/2 jobs done)"),
        (
            flow("Pending", cond("Ready", "False", "InvalidSpec", "flow has 60000 jobs")),
            "Degraded",
            "InvalidSpec: flow has 60000 jobs",
        ),
        (
            flow("Pending", cond("Ready", "False", "NoConnection", "no default Redis")),
            "Degraded",
            "NoConnection: no default Redis",
        ),
        # A Secret that Argo CD may create a moment later: not (yet) an error.
        (
            flow("Pending", cond("Ready", "False", "ConnectionSecretNotFound", "Secret ns/r")),
            "Progressing",
            "Pending: Secret ns/r",
        ),
    ],
)
def test_flow_health(obj: dict[str, Any], status: str, message: str) -> None:
    assert argocd_health("Flow", obj) == {"status": status, "message": message}


def pool(
    *conditions: dict[str, Any],
    generation: int = 2,
    observed: int | None = 2,
    with_status: bool = True,
) -> dict[str, Any]:
    status = {
        "observedGeneration": observed,
        "conditions": list(conditions),
        "replicas": 2,
        "desiredReplicas": 2,
        "readyReplicas": 1,
        "backlog": {"total": 7},
    }
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "p", "generation": generation},
        "status": status if with_status else None,
    }


ACTIVE = cond("ScalingActive", "True", "BacklogRead", "backlog 7 on q")
WITHIN = cond("ScalingLimited", "False", "WithinBounds")


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        (pool(with_status=False), "Progressing", "Waiting for the bullflow operator"),
        (pool(observed=1), "Progressing", "Waiting for the operator to observe generation 2"),
        (pool(ACTIVE), "Progressing", "Waiting for the bullflow operator"),
        (
            pool(cond("Ready", "True", "ReplicasReady", "2/2 replicas ready"), ACTIVE, WITHIN),
            "Healthy",
            "ReplicasReady: 2/2 replicas ready",
        ),
        (
            pool(
                cond("Ready", "True", "ReplicasReady", "10/10 replicas ready"),
                ACTIVE,
                cond("ScalingLimited", "True", "TooManyReplicas", "capped at maxReplicas 10"),
            ),
            "Healthy",
            "ReplicasReady: 10/10 replicas ready; scaling limited: TooManyReplicas: "
            "capped at maxReplicas 10",
        ),
        (
            pool(cond("Ready", "False", "ReplicasNotReady", "1/2 replicas ready"), ACTIVE, WITHIN),
            "Progressing",
            "ReplicasNotReady: 1/2 replicas ready",
        ),
        (
            pool(cond("Ready", "False", "InvalidSpec", "spec.queues: too short")),
            "Degraded",
            "InvalidSpec: spec.queues: too short",
        ),
        (
            pool(cond("Ready", "False", "ScaleTargetNotFound", "Deployment ns/w does not exist")),
            "Degraded",
            "ScaleTargetNotFound: Deployment ns/w does not exist",
        ),
        (
            pool(cond("Ready", "False", "ReconcileError", "ApiException: 500")),
            "Degraded",
            "ReconcileError: ApiException: 500",
        ),
        (
            pool(
                cond("Ready", "True", "ReplicasReady", "1/1 replicas ready"),
                cond(
                    "ScalingActive", "False", "RedisUnavailable", "Redis down; keeping 1 replicas"
                ),
            ),
            "Degraded",
            "Scaling inactive: RedisUnavailable: Redis down; keeping 1 replicas",
        ),
        (
            pool(cond("Ready", "Unknown", "Starting")),
            "Progressing",
            "Waiting for the bullflow operator",
        ),
    ],
)
def test_workerpool_health(obj: dict[str, Any], status: str, message: str) -> None:
    assert argocd_health("WorkerPool", obj) == {"status": status, "message": message}
