"""`python -m tests.harness up|down|status|env` — a detached local cluster + Redis.

`up` prints shell exports on stdout (everything else goes to stderr), so
`eval "$(python -m tests.harness up)"` works. State: $BULLFLOW_CACHE/run/state.json
(or $BULLFLOW_RUN_DIR/state.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tests.harness.cluster import LocalCluster
from tests.harness.process import pid_alive, pid_cmdline, terminate_pid_group
from tests.harness.redis import RedisServer
from tests.harness.tools import cache_dir

# Daemon name -> a string its argv[0] must contain (guards against recycled pids).
_BINARIES = {
    "etcd": "etcd",
    "kube-apiserver": "kube-apiserver",
    "kube-controller-manager": "kube-controller-manager",
    "kube-scheduler": "kube-scheduler",
    "kwok": "kwok",
    "redis-server": "redis-server",
}
# Start order; stopped in reverse.
_ORDER = list(_BINARIES)


def run_dir() -> Path:
    """$BULLFLOW_RUN_DIR, default $BULLFLOW_CACHE/run (state.json, cluster and redis dirs)."""
    return Path(os.environ.get("BULLFLOW_RUN_DIR") or cache_dir() / "run")


def state_path() -> Path:
    return run_dir() / "state.json"


def load_state() -> dict[str, Any] | None:
    try:
        return json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None


def _ours(name: str, pid: int) -> bool:
    argv = pid_cmdline(pid)
    return bool(argv) and _BINARIES.get(name, name) in argv[0] and pid_alive(pid)


def process_status(state: dict[str, Any]) -> dict[str, bool]:
    return {name: _ours(name, int(pid)) for name, pid in state.get("pids", {}).items()}


def is_up(state: dict[str, Any] | None) -> bool:
    if not state:
        return False
    status = process_status(state)
    return set(status) == set(_BINARIES) and all(status.values())


def exports(state: dict[str, Any]) -> str:
    return (
        f"export KUBECONFIG={state['kubeconfig']}\nexport BULLFLOW_REDIS_URL={state['redis_url']}\n"
    )


def cmd_up(_: argparse.Namespace) -> int:
    state = load_state()
    if is_up(state):
        assert state is not None
        print("local cluster already up", file=sys.stderr)
        sys.stdout.write(exports(state))
        return 0
    if state:
        print("stale/partial local cluster state; cleaning up first", file=sys.stderr)
        cmd_down(argparse.Namespace())
    workdir = run_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(workdir / "cluster", detached=True)
    redis = RedisServer(workdir / "redis", detached=True)
    try:
        cluster.start()
        redis.start()
    except BaseException:
        redis.stop()
        cluster.stop()
        raise
    pids = cluster.pids()
    assert redis.pid is not None
    pids["redis-server"] = redis.pid
    new_state = {
        **cluster.state(),
        "pids": pids,
        "redis_url": redis.url,
        "redis_port": redis.port,
        "redis_log": str(redis.log_path),
        "started_by_pid": os.getpid(),
    }
    tmp = state_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(new_state, indent=2))
    tmp.replace(state_path())
    print(
        f"local cluster {cluster.version} up in {cluster.startup_seconds:.1f}s; "
        f"logs in {cluster.logs_dir}; stop with `python -m tests.harness down`",
        file=sys.stderr,
    )
    sys.stdout.write(exports(new_state))
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("local cluster not running (no state file)", file=sys.stderr)
        return 0
    pids: dict[str, int] = state.get("pids", {})
    for name in reversed(_ORDER):
        pid = pids.get(name)
        if pid is None:
            continue
        if _ours(name, int(pid)):
            print(f"stopping {name} (pid {pid})", file=sys.stderr)
            terminate_pid_group(int(pid))
    state_path().unlink(missing_ok=True)
    print("local cluster down", file=sys.stderr)
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("down")
        return 1
    up = is_up(state)
    print("up" if up else "degraded")
    for name, alive in process_status(state).items():
        print(f"  {name:<24} pid {state['pids'][name]:<8} {'running' if alive else 'DEAD'}")
    print(f"  kubeconfig {state['kubeconfig']}\n  server {state['server']}")
    print(f"  redis {state['redis_url']}")
    return 0 if up else 1


def cmd_env(_: argparse.Namespace) -> int:
    state = load_state()
    if not is_up(state):
        print("local cluster is not up; run `python -m tests.harness up`", file=sys.stderr)
        return 1
    assert state is not None
    sys.stdout.write(exports(state))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("up", cmd_up, "start control plane + Redis in the background (idempotent)"),
        ("down", cmd_down, "stop what `up` started"),
        ("status", cmd_status, "show whether it is up (exit 0 if up)"),
        ("env", cmd_env, "print the shell exports for the running cluster"),
    ):
        sub.add_parser(name, help=help_).set_defaults(fn=fn)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
