"""The chaos suite's own control plane, Redis, operator and workers (module scope): stopping
kube-apiserver, etcd or Redis here disturbs no other test module."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.chaos import workload
from tests.chaos.chaos import ChaosRun
from tests.e2e.operator_proc import ROOT, OperatorProcess, WorkerSet
from tests.harness.private import private_cluster
from tests.harness.tools import Tools

# The operator's safety-net resync: production's 60 s by default, so that convergence within the
# 30 s deadline cannot rest on it (the e2e operator runs with 5 s).
RESYNC_SECONDS = os.environ.get("BULLFLOW_CHAOS_RESYNC_SECONDS", "60")
_tables: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: faults (control plane, Redis, operator, workers) during a flow run"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for table in _tables:
        terminalreporter.write_sep("=", "bullflow chaos: convergence after each fault")
        for line in table.splitlines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def chaos(harness_tools: Tools) -> Iterator[ChaosRun]:
    # Not under pytest's basetemp: other sessions on the machine rotate it away. Kept when a
    # fault failed (or BULLFLOW_KEEP_CLUSTER_LOGS is set), removed otherwise.
    workdir = Path(tempfile.mkdtemp(prefix="bullflow-chaos-"))
    keep = True
    with contextlib.ExitStack() as stack:
        cluster, redis = stack.enter_context(private_cluster(harness_tools, workdir))
        subprocess.run(
            [
                str(harness_tools.kubectl),
                f"--kubeconfig={cluster.kubeconfig}",
                "apply",
                "--server-side",
                "-f",
                str(ROOT / "crds"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                str(harness_tools.kubectl),
                f"--kubeconfig={cluster.kubeconfig}",
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
        namespace = f"chaos-{uuid.uuid4().hex[:6]}"
        api = cluster.api_client()
        client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        api.close()
        operator = OperatorProcess(
            cluster.kubeconfig,
            redis.url,
            workdir / "operator",
            namespaces=["chaos-*"],
            env={"BULLFLOW_RESYNC_INTERVAL_SECONDS": RESYNC_SECONDS},
        )
        operator.start()
        stack.callback(operator.stop)
        workers = WorkerSet(redis.url, workdir / "workers")
        stack.callback(workers.stop)
        workers.start("node", workload.NODE_QUEUES, workload.PREFIX, concurrency=20)
        workers.start("python", workload.PYTHON_QUEUES, workload.PREFIX, concurrency=20)
        run = ChaosRun(cluster, redis, operator, workers, namespace, workdir)
        stack.callback(run.close)
        try:
            yield run
        finally:
            keep = os.environ.get("BULLFLOW_KEEP_CLUSTER_LOGS") or not all(
                r.passed for r in run.rows
            )
            _tables.append(run.table() + (f"\n(logs: {workdir})" if keep else ""))
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
