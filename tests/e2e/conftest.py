"""e2e fixtures: CRDs installed, the real operator running, real workers on demand."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.flows import Flows
from tests.e2e.operator_proc import ROOT, OperatorProcess, WorkerSet
from tests.harness.cluster import LocalCluster
from tests.harness.redis import RedisServer


@pytest.fixture(scope="session")
def flow_crds(kubectl: Any) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture(scope="session")
def operator(
    flow_crds: None,
    local_cluster: LocalCluster,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """One operator for the session, watching the per-test namespaces (t-*)."""
    proc = OperatorProcess(
        local_cluster.kubeconfig,
        redis_server.url,
        tmp_path_factory.mktemp("operator"),
        namespaces=["t-*"],
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[WorkerSet]:
    ws = WorkerSet(redis_server.url, tmp_path)
    yield ws
    ws.stop()


@pytest.fixture
def flows(kube_client: Any, kubectl: Any, namespace: str) -> Flows:
    return Flows(kube_client, kubectl, namespace)


@pytest.fixture
def private_namespace(kube_client: Any) -> Iterator[str]:
    """A namespace the session operator does not watch (it watches t-*)."""
    core = client.CoreV1Api(kube_client)
    name = f"own-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")
