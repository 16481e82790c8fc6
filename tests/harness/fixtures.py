"""pytest fixtures for the local control plane and Redis (loaded by tests/conftest.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.redis import RedisServer
from tests.harness.tools import Tools, ensure_tools

log = logging.getLogger(__name__)

TESTS_DIR = Path(__file__).resolve().parents[1]
_TIERS = ("unit", "integration", "e2e", "chaos")


class Kubectl(Protocol):
    def __call__(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]: ...


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test with its tier by directory: tests/<tier>/... -> @pytest.mark.<tier>."""
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(TESTS_DIR)
        except ValueError:
            continue
        tier = rel.parts[0] if rel.parts else ""
        if tier in _TIERS and not any(item.iter_markers(name=tier)):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and os.environ.get("BULLFLOW_KEEP_CLUSTER_LOGS"):
        cluster = _session_objects.get("cluster")
        redis = _session_objects.get("redis")
        lines = []
        if isinstance(cluster, LocalCluster):
            lines += [f"{k}: {v}" for k, v in cluster.log_paths().items()]
        if isinstance(redis, RedisServer):
            lines.append(f"redis-server: {redis.log_path}")
        if lines:
            report.sections.append(("bullflow harness logs", "\n".join(lines)))
    return report


_session_objects: dict[str, object] = {}
_startup_notes: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for note in _startup_notes:
        terminalreporter.write_line(note)


@pytest.fixture(scope="session")
def harness_tools() -> Tools:
    """Paths of the built binaries (building them first if any is missing)."""
    return ensure_tools()


@pytest.fixture(scope="session")
def local_cluster(
    tmp_path_factory: pytest.TempPathFactory, harness_tools: Tools
) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    cluster = LocalCluster(workdir, tools=harness_tools)
    _session_objects["cluster"] = cluster
    cluster.start()
    _startup_notes.append(
        f"bullflow harness: local cluster {cluster.version} started in "
        f"{cluster.startup_seconds:.1f}s (logs: {cluster.logs_dir})"
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        _session_objects.pop("cluster", None)
        if os.environ.get("BULLFLOW_KEEP_CLUSTER_LOGS"):
            print(f"\nlocal cluster logs kept in {cluster.logs_dir}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    _session_objects["redis"] = server
    server.start()
    try:
        yield server
    finally:
        server.stop()
        _session_objects.pop("redis", None)


@pytest.fixture(scope="session")
def kube_client(local_cluster: LocalCluster) -> Iterator[Any]:
    """Admin `kubernetes.client.ApiClient` for the local cluster."""
    api = local_cluster.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube_client: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test; deleted afterwards (without waiting for it to go)."""
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_client)
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = {"metadata": {"name": name, "labels": {"bullflow.test": "true"}}}
    core.create_namespace(body)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_prefix(redis_server: RedisServer) -> Iterator[str]:
    """A unique BullMQ prefix per test; its keys are deleted afterwards."""
    import redis

    prefix = f"bt{uuid.uuid4().hex[:8]}"
    yield prefix
    # The server may have been stopped/restarted by an outage test; cleanup is best effort.
    with contextlib.suppress(Exception):
        r = redis.Redis.from_url(redis_server.url)
        try:
            batch = []
            for key in r.scan_iter(match=f"{prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    r.delete(*batch)
                    batch.clear()
            if batch:
                r.delete(*batch)
        finally:
            r.close()


@pytest.fixture(scope="session")
def kubectl(local_cluster: LocalCluster, harness_tools: Tools) -> Kubectl:
    """`kubectl("get", "pods", "-n", ns)` -> CompletedProcess[str]; raises on failure
    (with stderr in the message) unless check=False."""

    def run(
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        argv: Sequence[str] = [
            str(harness_tools.kubectl),
            f"--kubeconfig={local_cluster.kubeconfig}",
            *args,
        ]
        proc = subprocess.run(
            argv, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    return run
