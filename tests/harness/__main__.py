"""`python -m tests.harness up|down|status|env` — a detached local cluster + Redis.

`up --real-node` adds the real node (tests/harness/node.py: kubelet + containerd) to the kwok
ones; `down` stops it and removes its containers, mounts, bridge and iptables rules.

`up` prints shell exports on stdout (everything else goes to stderr), so
`eval "$(python -m tests.harness up)"` works. State: $BULLFLOW_RUN_DIR/state.json, by default
$BULLFLOW_CACHE/run/<clone>-<hash of the clone's path>/state.json: one cluster per clone, so
`make cluster-down` in one clone never stops another clone's cluster (the tool cache is shared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tests.harness.cluster import LocalCluster
from tests.harness.node import cleanup_leftovers, release_stale_claim
from tests.harness.node_config import NODE_IP
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
# The real node's daemons, with `up --real-node` only.
_NODE_BINARIES = {"containerd": "containerd", "kubelet": "kubelet", "kube-proxy": "kube-proxy"}
# Start order; stopped in reverse (the node before the control plane it reports to).
_ORDER = [*_BINARIES, *_NODE_BINARIES]


# The clone this harness belongs to: its identity is where its code lives, not the cwd.
CLONE_ROOT = Path(__file__).resolve().parents[2]


def clone_run_name(clone_root: Path) -> str:
    """`<basename>-<8 hex of the absolute path>`: readable, and distinct for two clones that
    share a basename (~/a/bullflow and ~/b/bullflow)."""
    digest = hashlib.sha256(str(clone_root.resolve()).encode()).hexdigest()[:8]
    return f"{clone_root.resolve().name}-{digest}"


def run_dir() -> Path:
    """$BULLFLOW_RUN_DIR, default $BULLFLOW_CACHE/run/<clone_run_name> (state.json, cluster
    and redis dirs)."""
    override = os.environ.get("BULLFLOW_RUN_DIR")
    return Path(override) if override else cache_dir() / "run" / clone_run_name(CLONE_ROOT)


def legacy_state_hint() -> str | None:
    """A cluster started before run dirs were per clone is recorded in $BULLFLOW_CACHE/run;
    says how to stop it, since `down` no longer looks there."""
    legacy = cache_dir() / "run"
    if os.environ.get("BULLFLOW_RUN_DIR") or not (legacy / "state.json").is_file():
        return None
    return (
        f"a cluster started by an older harness is recorded in {legacy}; stop it with "
        f"`BULLFLOW_RUN_DIR={legacy} python -m tests.harness down`"
    )


def state_path() -> Path:
    return run_dir() / "state.json"


def load_state() -> dict[str, Any] | None:
    try:
        return json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None


def _ours(name: str, pid: int) -> bool:
    argv = pid_cmdline(pid)
    binary = {**_BINARIES, **_NODE_BINARIES}.get(name, name)
    return bool(argv) and binary in argv[0] and pid_alive(pid)


def process_status(state: dict[str, Any]) -> dict[str, bool]:
    return {name: _ours(name, int(pid)) for name, pid in state.get("pids", {}).items()}


def is_up(state: dict[str, Any] | None) -> bool:
    if not state:
        return False
    status = process_status(state)
    expected = set(_BINARIES) | (set(_NODE_BINARIES) if state.get("real_node_workdir") else set())
    return set(status) == expected and all(status.values())


def exports(state: dict[str, Any]) -> str:
    return (
        f"export KUBECONFIG={state['kubeconfig']}\nexport BULLFLOW_REDIS_URL={state['redis_url']}\n"
    )


def cmd_up(args: argparse.Namespace) -> int:
    state = load_state()
    real_node = bool(getattr(args, "real_node", False))
    if is_up(state):
        assert state is not None
        if real_node and not state.get("real_node_workdir"):
            print("local cluster already up without the real node; `down` first", file=sys.stderr)
            return 1
        print("local cluster already up", file=sys.stderr)
        sys.stdout.write(exports(state))
        return 0
    if state:
        print("stale/partial local cluster state; cleaning up first", file=sys.stderr)
        cmd_down(argparse.Namespace())
    workdir = run_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(workdir / "cluster", detached=True, real_node=real_node)
    # With the real node, Redis also listens on the node's bridge address: its pods' Redis.
    also_bind = (NODE_IP,) if real_node else ()
    redis = RedisServer(workdir / "redis", detached=True, also_bind=also_bind)
    try:
        cluster.start()
        redis.start()
    except BaseException:
        redis.stop()
        cluster.stop()
        raise
    pids = cluster.pids()
    if cluster.real_node is not None:
        cluster.real_node.claim_for_pid(pids["containerd"])
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
        print(f"local cluster not running (no {state_path()})", file=sys.stderr)
        if hint := legacy_state_hint():
            print(hint, file=sys.stderr)
        return 0
    pids: dict[str, int] = state.get("pids", {})
    for name in reversed(_ORDER):
        pid = pids.get(name)
        if pid is None:
            continue
        if _ours(name, int(pid)):
            print(f"stopping {name} (pid {pid})", file=sys.stderr)
            terminate_pid_group(int(pid))
    if node_workdir := state.get("real_node_workdir"):
        print("removing the real node's containers, mounts, bridge and rules", file=sys.stderr)
        cleanup_leftovers(Path(node_workdir))
        release_stale_claim(Path(node_workdir))
    state_path().unlink(missing_ok=True)
    print("local cluster down", file=sys.stderr)
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("down")
        if hint := legacy_state_hint():
            print(hint, file=sys.stderr)
        return 1
    up = is_up(state)
    print("up" if up else "degraded")
    for name, alive in process_status(state).items():
        print(f"  {name:<24} pid {state['pids'][name]:<8} {'running' if alive else 'DEAD'}")
    print(f"  kubeconfig {state['kubeconfig']}\n  server {state['server']}")
    print(f"  redis {state['redis_url']}\n  state {state_path()}")
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
        command = sub.add_parser(name, help=help_)
        command.set_defaults(fn=fn)
        if name == "up":
            command.add_argument(
                "--real-node",
                action="store_true",
                help="also a real node (kubelet + containerd) for real pods; see "
                "docs/contributing.md",
            )
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
