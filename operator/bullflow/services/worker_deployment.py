"""The workload a WorkerPool scales: the owned Deployment running bullflow-worker (pure).

A pool with spec.worker owns `<pool>-workers`, built here from the spec alone and applied by
the controller with server-side apply; a pool with spec.scaleTargetRef only scales the user's
own Deployment or StatefulSet. `deployment_digest` is what the controller compares to know
whether the Deployment it applied last still matches the spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .. import GROUP, VERSION, __version__
from ..models.common import SecretKeyRef
from ..models.workerpool import DEFAULT_IMAGE_REPO, WorkerPoolSpec, WorkerTemplate
from .connection_secret import URL_KEY

POOL_LABEL = "bullflow.io/workerpool"
HTTP_PORT = 8080
# A pod-template annotation: the managed Secret's resourceVersion, so that workers restart on
# a new default URL (env from a Secret is read at container start only).
SECRET_VERSION_ANNOTATION = "bullflow.io/connection-secret-version"


@dataclass(frozen=True)
class ScaleState:
    """A workload's scale: spec.replicas, and what its pods report."""

    kind: str
    name: str
    replicas: int
    ready_replicas: int
    selector: str  # label selector of its pods, as the scale subresource reports it
    generation: int | None = None
    uid: str | None = None


@dataclass(frozen=True)
class ManagedSecret:
    """The operator's Secret holding the default Redis URL for one pool's workers."""

    name: str
    resource_version: str


def activity_key(prefix: str, namespace: str, pod: str) -> str:
    """Where a worker reports its active jobs (see storage/queues.py)."""
    return f"{prefix}:bullflow:activity:{namespace}:{pod}"


def deployment_name(pool: str) -> str:
    return f"{pool}-workers"


def scale_target(pool: str, spec: WorkerPoolSpec) -> tuple[str, str]:
    """(kind, name) of the workload the pool scales: its own Deployment or scaleTargetRef."""
    if spec.worker is not None:
        return "Deployment", deployment_name(pool)
    assert spec.scale_target_ref is not None  # the spec has exactly one of them
    return spec.scale_target_ref.kind, spec.scale_target_ref.name


def deployment_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def build_deployment(
    namespace: str,
    name: str,
    uid: str,
    spec: WorkerPoolSpec,
    replicas: int,
    default_secret: ManagedSecret | None,
) -> dict[str, Any]:
    """The owned Deployment running bullflow-worker (a pure function of the spec).

    The Redis URL reaches the workers only through a Secret: the pool's spec.connection, else
    `default_secret` (the operator's default URL, see services/connection_secret.py); never as
    a plain env value, which anyone who can read Deployments or Pods would see."""
    worker = spec.worker
    assert worker is not None
    labels = {
        "app.kubernetes.io/name": "bullflow-worker",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "bullflow",
        POOL_LABEL: name,
    }
    pod_annotations = dict(worker.pod_annotations)
    if spec.connection is None and default_secret is not None:
        pod_annotations[SECRET_VERSION_ANNOTATION] = default_secret.resource_version
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "WorkerPool",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {POOL_LABEL: name}},
            "template": {
                "metadata": {
                    "labels": {**worker.pod_labels, **labels},
                    **({"annotations": pod_annotations} if pod_annotations else {}),
                },
                "spec": _pod_spec(worker, _container(spec, worker, default_secret)),
            },
        },
    }


def _container(
    spec: WorkerPoolSpec, worker: WorkerTemplate, default_secret: ManagedSecret | None
) -> dict[str, Any]:
    args = [a for q in spec.queues for a in ("--queue", q)]
    args += [
        "--processor",
        worker.processor,
        "--concurrency",
        str(worker.concurrency),
        "--prefix",
        spec.prefix,
        "--http-port",
        str(HTTP_PORT),
        "--activity-key",
        activity_key(spec.prefix, "$(POD_NAMESPACE)", "$(POD_NAME)"),
        "--log-format",
        "json",
        *worker.args,
    ]
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        _url_env(spec.connection, default_secret),
        *worker.env,
    ]
    container: dict[str, Any] = {
        "name": "worker",
        "image": worker.image or f"{DEFAULT_IMAGE_REPO}:{__version__}",
        "command": ["bullflow-worker"],
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    optional = {
        "imagePullPolicy": worker.image_pull_policy,
        "envFrom": worker.env_from,
        "resources": worker.resources,
        "volumeMounts": worker.volume_mounts,
    }
    return container | {k: v for k, v in optional.items() if v}


def _url_env(
    connection: SecretKeyRef | None, default_secret: ManagedSecret | None
) -> dict[str, Any]:
    url_ref = connection or (
        SecretKeyRef(name=default_secret.name, key=URL_KEY) if default_secret else None
    )
    if url_ref is None:
        # No Secret and no default Redis: nothing to hide (the pool reports NoConnection).
        return {"name": "BULLFLOW_REDIS_URL", "value": ""}
    return {
        "name": "BULLFLOW_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": url_ref.name, "key": url_ref.key}},
    }


def _pod_spec(worker: WorkerTemplate, container: dict[str, Any]) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": worker.termination_grace_period_seconds,
    }
    optional = {
        "volumes": worker.volumes,
        "serviceAccountName": worker.service_account_name,
        "nodeSelector": worker.node_selector,
        "tolerations": worker.tolerations,
        "affinity": worker.affinity,
    }
    return pod_spec | {k: v for k, v in optional.items() if v}
