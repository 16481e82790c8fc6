"""`make demo`: a Flow applied with kubectl, run by real workers, its status tree shown live.

Cluster: $KUBECONFIG's (or ~/.kube/config's) cluster when it answers, else the local control
plane (started with `python -m tests.harness up` and left running; `make cluster-down` stops
it). Redis: $BULLFLOW_REDIS_URL, else the local one. The operator and the workers run here, as
local processes, for the length of the demo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.redis import RedisServer  # noqa: E402
from tests.harness.tools import ensure_tools  # noqa: E402

NAMESPACE = "bullflow-demo"
EXAMPLE = ROOT / "examples" / "order.yaml"
SYMBOLS = {
    "completed": "✔",
    "failed": "✖",
    "active": "▶",
    "waiting-children": "◷",
    "waiting": "…",
    "delayed": "⏲",
    "prioritized": "…",
    "unknown": "?",
}


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def reachable(kubectl: Path, kubeconfig: str | None) -> bool:
    if not kubeconfig or not Path(kubeconfig).exists():
        return False
    probe = subprocess.run(
        [
            str(kubectl),
            f"--kubeconfig={kubeconfig}",
            "get",
            "--raw=/readyz",
            "--request-timeout=5s",
        ],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0


def local_cluster_env() -> dict[str, str]:
    say("no reachable cluster configured: starting the local control plane and Redis")
    out = subprocess.run(
        [sys.executable, "-m", "tests.harness", "up"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    env = {}
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'\"")
    return env


def local_redis_url() -> str:
    say("BULLFLOW_REDIS_URL is not set: starting a local redis-server (left running)")
    server = RedisServer(
        Path(os.environ.get("BULLFLOW_CACHE", Path.home() / ".cache/bullflow")) / "demo-redis",
        detached=True,
    )
    server.start()
    return server.url


def tree_lines(status: dict, spec_root: dict) -> list[str]:
    nodes = {n["path"]: n for n in status.get("nodes", [])}
    lines: list[str] = []

    def walk(node: dict, path: str, depth: int) -> None:
        info = nodes.get(path, {})
        state = info.get("state", "pending")
        detail = info.get("failedReason") or (
            json.dumps(info["returnValue"])[:60] if "returnValue" in info else ""
        )
        lines.append(
            f"{'   ' * depth}{SYMBOLS.get(state, '·')} {node['name']:<16} "
            f"{node['queueName']:<12} {state:<17} {detail}"
        )
        for index, child in enumerate(node.get("children", [])):
            walk(child, f"{path}.{index}", depth + 1)

    walk(spec_root, "0", 0)
    return lines


def main() -> int:
    tools = ensure_tools()
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    env = dict(os.environ)
    if reachable(tools.kubectl, kubeconfig):
        say(f"using the cluster of {kubeconfig}")
        env["KUBECONFIG"] = kubeconfig
    else:
        env.update(local_cluster_env())
    if not env.get("BULLFLOW_REDIS_URL"):
        env["BULLFLOW_REDIS_URL"] = local_redis_url()

    def kubectl(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(tools.kubectl), *args], env=env, input=stdin, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"[demo] kubectl {' '.join(args[:3])} failed: {done.stderr.strip()}")
        return done.stdout

    server = kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    version = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    say(f"cluster: {server} ({version})")
    say(f"redis: {env['BULLFLOW_REDIS_URL']}")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    subprocess.run(
        [str(tools.kubectl), "create", "namespace", NAMESPACE], env=env, capture_output=True
    )
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = f"order-{uuid.uuid4().hex[:5]}"
    queues = sorted(_queues(doc["spec"]["root"]))
    bin_dir = Path(sys.executable).parent
    logs = Path(env.get("BULLFLOW_CACHE", Path.home() / ".cache" / "bullflow")) / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [
                str(bin_dir / "bullflow-operator"),
                "--standalone",
                "-n",
                NAMESPACE,
                "--metrics-port=0",
            ],
            env=env,
            stdout=open(logs / "operator.log", "w"),  # noqa: SIM115 - lives with the process
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [
                str(bin_dir / "bullflow-worker"),
                *[arg for q in queues for arg in ("--queue", q)],
                "--processor",
                "bullflow_worker.processors:scripted",
                "--concurrency",
                "5",
                "--http-port",
                "0",
            ],
            env=env,
            stdout=open(logs / "worker.log", "w"),  # noqa: SIM115 - lives with the process
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        say(f"operator and a Python BullMQ worker started (logs in {logs})")
        say(f"kubectl apply -f {EXAMPLE.relative_to(ROOT)}  (as {doc['metadata']['name']})")
        kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=yaml.safe_dump(doc))
        return follow(kubectl, doc)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


def follow(kubectl, doc) -> int:  # type: ignore[no-untyped-def]
    name = doc["metadata"]["name"]
    deadline = time.monotonic() + 120
    shown = None
    while time.monotonic() < deadline:
        flow = json.loads(kubectl("get", "flow", name, "-n", NAMESPACE, "-o", "json"))
        status = flow.get("status") or {}
        frame = [
            f"flow {NAMESPACE}/{name}: phase={status.get('phase', 'Pending')} "
            f"progress={status.get('progress', '-')}",
            *tree_lines(status, doc["spec"]["root"]),
        ]
        if frame != shown:
            print("\n".join(frame), "\n", flush=True)
            shown = frame
        if status.get("phase") in ("Completed", "Failed"):
            print(kubectl("get", "flows", "-n", NAMESPACE))
            say(f"result: {json.dumps(status.get('result'))}")
            say("see also: kubectl describe flow -n bullflow-demo " + name)
            return 0 if status["phase"] == "Completed" else 1
        time.sleep(0.3)
    say("the flow did not finish in 120 s")
    return 1


def _queues(node: dict) -> set[str]:
    return {node["queueName"]}.union(*(_queues(c) for c in node.get("children", [])))


if __name__ == "__main__":
    sys.exit(main())
