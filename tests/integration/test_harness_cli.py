"""`python -m tests.harness up|status|env|down`: detached, idempotent, leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kubernetes import client, config

from tests.harness.process import pid_alive

REPO = Path(__file__).resolve().parents[2]


def harness(run_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BULLFLOW_RUN_DIR=str(run_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.harness", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed {proc.returncode}:\n{proc.stderr}\n{proc.stdout}")
    return proc


def parse_exports(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        assert line.startswith("export "), line
        key, value = line.removeprefix("export ").split("=", 1)
        out[key] = value
    return out


def test_cli_up_status_env_down(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert harness(run_dir, "status", check=False).returncode == 1
    try:
        up = harness(run_dir, "up")
        exports = parse_exports(up.stdout)
        assert set(exports) == {"KUBECONFIG", "BULLFLOW_REDIS_URL"}
        state = json.loads((run_dir / "state.json").read_text())
        pids = state["pids"]
        assert set(pids) == {
            "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
            "redis-server",
        }  # fmt: skip
        # The daemons outlived the CLI process that started them.
        assert all(pid_alive(pid) for pid in pids.values())

        api = config.new_client_from_config(config_file=exports["KUBECONFIG"])
        try:
            assert len(client.CoreV1Api(api).list_node().items) == 2
        finally:
            api.close()

        # Idempotent: a second `up` reuses the running cluster.
        again = harness(run_dir, "up")
        assert parse_exports(again.stdout) == exports
        assert json.loads((run_dir / "state.json").read_text())["pids"] == pids
        assert "already up" in again.stderr

        assert harness(run_dir, "status").stdout.startswith("up")
        assert parse_exports(harness(run_dir, "env").stdout) == exports
    finally:
        harness(run_dir, "down")
    assert not (run_dir / "state.json").exists()
    assert not any(pid_alive(pid) for pid in pids.values())
    assert harness(run_dir, "status", check=False).returncode == 1
    assert harness(run_dir, "env", check=False).returncode == 1
