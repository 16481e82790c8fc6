"""`python -m tests.harness up|status|env|down`: detached, idempotent, leaves nothing behind, one
cluster per clone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import redis
from kubernetes import client, config

from tests.harness.__main__ import clone_run_name
from tests.harness.process import pid_alive
from tests.harness.tools import cache_dir, ensure_tools

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


def copy_clone(dest: Path) -> Path:
    """The harness as another clone has it: its package (and the `tests` package around it) at
    another absolute path. The run dir is derived from where the package lives, so this is what
    tells two clones apart; the tool cache stays shared."""
    (dest / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "__init__.py", dest / "tests" / "__init__.py")
    shutil.copytree(
        REPO / "tests" / "harness",
        dest / "tests" / "harness",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return dest


def clone_harness(clone: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BULLFLOW_RUN_DIR", "PYTHONPATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.harness", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{clone}: {args} failed {proc.returncode}:\n{proc.stderr}")
    return proc


def nodes(kubeconfig: str) -> int:
    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        return len(client.CoreV1Api(api).list_node(_request_timeout=10).items)
    finally:
        api.close()


def redis_answers(url: str) -> bool:
    conn = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return bool(conn.ping())
    finally:
        conn.close()


def test_two_clones_get_two_clusters_and_down_stops_only_its_own(tmp_path: Path) -> None:
    ensure_tools()  # shared by both clones; built once, before either starts
    # Same basename, different paths: the hash, not the name, keeps them apart.
    clone_a = copy_clone(tmp_path / "a" / "bullflow")
    clone_b = copy_clone(tmp_path / "b" / "bullflow")
    run_a = cache_dir() / "run" / clone_run_name(clone_a)
    run_b = cache_dir() / "run" / clone_run_name(clone_b)
    assert run_a != run_b and run_a.parent == run_b.parent
    try:
        env_a = parse_exports(clone_harness(clone_a, "up").stdout)
        env_b = parse_exports(clone_harness(clone_b, "up").stdout)
        # Each clone's state is in its own run dir, written by the copy (not by /work/main).
        state_a = json.loads((run_a / "state.json").read_text())
        state_b = json.loads((run_b / "state.json").read_text())
        assert state_a["kubeconfig"].startswith(str(run_a))
        assert state_b["kubeconfig"].startswith(str(run_b))
        # No shared ports: each `up` picks free ones.
        assert state_a["server"] != state_b["server"]
        assert state_a["redis_port"] != state_b["redis_port"]
        assert env_a != env_b
        assert nodes(env_a["KUBECONFIG"]) == nodes(env_b["KUBECONFIG"]) == 2

        # B's second `up` finds its own cluster, not A's.
        assert parse_exports(clone_harness(clone_b, "up").stdout) == env_b

        clone_harness(clone_a, "down")
        assert not any(pid_alive(pid) for pid in state_a["pids"].values())
        assert clone_harness(clone_a, "status", check=False).returncode == 1
        # B is untouched: every daemon alive, the apiserver and Redis answer.
        assert all(pid_alive(pid) for pid in state_b["pids"].values())
        assert clone_harness(clone_b, "status").stdout.startswith("up")
        assert nodes(env_b["KUBECONFIG"]) == 2
        assert redis_answers(env_b["BULLFLOW_REDIS_URL"])
    finally:
        clone_harness(clone_a, "down", check=False)
        clone_harness(clone_b, "down", check=False)
        shutil.rmtree(run_a, ignore_errors=True)
        shutil.rmtree(run_b, ignore_errors=True)
    assert not any(pid_alive(pid) for pid in state_b["pids"].values())
