"""Real-pod tests: a cluster of their own with a real node (tests/harness/node.py) next to the
kwok nodes.

In this directory `local_cluster`, `kube_client` and `kubectl` are that cluster's (overriding
tests/harness/fixtures.py), so `namespace` is created there too; `real_node` is its node. Put
`real_node_placement()` (tests/harness/node_config.py) into a pod spec to run it on the real
node: the node's taint keeps every other pod, in this and the shared session cluster, on kwok.
The session-wide `operator` fixture (tests/e2e/conftest.py) belongs to the shared cluster: do
not use it here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.fixtures import Kubectl
from tests.harness.node import RealNode
from tests.harness.tools import Tools


@pytest.fixture(scope="session")
def local_cluster(
    tmp_path_factory: pytest.TempPathFactory, harness_tools: Tools
) -> Iterator[LocalCluster]:
    # A short path: containerd's sockets live under the node's workdir.
    cluster = LocalCluster(tmp_path_factory.mktemp("rn"), tools=harness_tools, real_node=True)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def real_node(local_cluster: LocalCluster) -> RealNode:
    assert local_cluster.real_node is not None
    return local_cluster.real_node


@pytest.fixture(scope="session")
def kube_client(local_cluster: LocalCluster) -> Iterator[Any]:
    api = local_cluster.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def kubectl(local_cluster: LocalCluster, harness_tools: Tools) -> Kubectl:
    """As tests/harness/fixtures.py's, against this directory's cluster."""

    def run(
        *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(harness_tools.kubectl), f"--kubeconfig={local_cluster.kubeconfig}", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    return run
