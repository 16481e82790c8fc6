"""`--version` of the three commands, and a port that is taken: one line and status 2, from real
processes (the commands as installed in the virtualenv)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import bullflow
import bullflow_worker

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("command", "version"),
    [
        ("bullflow-operator", bullflow.__version__),
        ("kubectl-bullflow", bullflow.__version__),
        ("bullflow-worker", bullflow_worker.__version__),
    ],
)
def test_version(command, version):
    proc = subprocess.run(
        [str(BIN / command), "--version"], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout) == (0, f"bullflow {version}\n"), proc.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on (all addresses, as the commands bind)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock.getsockname()[1]


def run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # No cluster: a taken port must be reported before anything talks to one.
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "absent")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_operator_metrics_port_taken(taken_port, tmp_path):
    proc = run([str(BIN / "bullflow-operator"), f"--metrics-port={taken_port}"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"bullflow-operator: cannot listen on :{taken_port} for metrics (address in use); "
        "pass --metrics-port with a free port or 0 to disable\n"
    )


def test_operator_liveness_port_taken(taken_port, tmp_path):
    liveness = f"--liveness=http://0.0.0.0:{taken_port}/healthz"
    proc = run([str(BIN / "bullflow-operator"), "--metrics-port=0", liveness], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"bullflow-operator: cannot listen on 0.0.0.0:{taken_port} for liveness (address in "
        "use); pass --liveness with a free port\n"
    )


def test_worker_http_port_taken(taken_port, tmp_path):
    argv = [
        str(BIN / "bullflow-worker"),
        *("--queue", "q", "--processor", "bullflow_worker.processors:scripted"),
        *("--redis-url", "redis://127.0.0.1:1", "--http-port", str(taken_port)),
    ]
    proc = run(argv, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"bullflow-worker: error: cannot listen on 0.0.0.0:{taken_port} for HTTP probes and "
        "metrics (address in use); pass --http-port with a free port or 0 to disable"
    )


def test_operator_without_a_cluster_says_so_in_one_line(tmp_path):
    proc = run([str(BIN / "bullflow-operator"), "--metrics-port=0"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        "bullflow-operator: cannot ask the Kubernetes API about peering: "
    )
