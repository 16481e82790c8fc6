"""`make demo`: a Flow applied with kubectl, run by real workers, its status tree shown live.

Cluster: $KUBECONFIG's (or ~/.kube/config's) cluster when it answers, else the local control
plane (started with `python -m tests.harness up` and left running; `make cluster-down` stops
it). Redis: $BULLFLOW_REDIS_URL, else the local cluster's, else a redis-server that lives as long
as the demo. The operator and the workers run here, as local processes, for the length of the
demo. The CRDs are applied with Helm's ownership metadata for the release the docs install
(docs/operations.md), so that `helm install` afterwards adopts them instead of refusing.
At the end it prints the shell lines (exports, a PATH with kubectl, `kubectl bullflow` and helm)
to look at the flow from the user's own shell.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

from bullflow.cli.tree import render_tree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.__main__ import run_dir  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402
from tests.harness.tools import Tools, ensure_tools  # noqa: E402

NAMESPACE = "bullflow-demo"
EXAMPLE = ROOT / "examples" / "order.yaml"
# examples/order.yaml's jobs say what to do in their data (result, combine: collect): the
# scripted processor is the one that reads it.
PROCESSOR = "bullflow_worker.processors:scripted"
# The release docs/operations.md installs ("CRDs applied before Helm").
HELM_RELEASE = "bullflow"
HELM_NAMESPACE = "bullflow-system"
HELM_INSTALL = (
    f"helm install {HELM_RELEASE} charts/bullflow -n {HELM_NAMESPACE} --create-namespace "
    '--set redis.url="$BULLFLOW_REDIS_URL"'
)
CHART_TEMPLATES = ROOT / "charts" / "bullflow" / "templates" / "crds"
RELEASE_NAME_KEY = "meta.helm.sh/release-name"
RELEASE_NAMESPACE_KEY = "meta.helm.sh/release-namespace"


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
    say("no reachable cluster configured: the local control plane and Redis (started if down)")
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


def helm_owned(docs: list[dict], release: str, namespace: str) -> list[dict]:
    """`docs` with the label and annotations Helm checks before it adopts an existing object
    into `release` (installed in `namespace`); without them `helm install` refuses the CRDs."""
    owned = []
    for doc in docs:
        meta = dict(doc.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), "app.kubernetes.io/managed-by": "Helm"}
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            RELEASE_NAME_KEY: release,
            RELEASE_NAMESPACE_KEY: namespace,
        }
        owned.append({**doc, "metadata": meta})
    return owned


def owning_release(existing: list[dict]) -> tuple[str, str]:
    """The release the cluster's CRDs already belong to, else the documented one: a chart
    installed under another name keeps them when the demo runs again."""
    for obj in existing:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if annotations.get(RELEASE_NAME_KEY) and annotations.get(RELEASE_NAMESPACE_KEY):
            return annotations[RELEASE_NAME_KEY], annotations[RELEASE_NAMESPACE_KEY]
    return HELM_RELEASE, HELM_NAMESPACE


def crd_documents() -> tuple[list[dict], list[dict]]:
    """crds/' objects: (those the chart also has as templates, whose ownership Helm checks;
    the rest, e.g. kopf's peering CRDs, which the chart's crds/ folder creates only when
    missing, so Helm never asks who owns them)."""
    templated: list[dict] = []
    plain: list[dict] = []
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        (templated if (CHART_TEMPLATES / path.name).exists() else plain).extend(docs)
    return templated, plain


def shell_tools(
    tools: Tools, venv_bin: Path, local_cluster: bool, on_path: Callable[[str], object]
) -> dict[str, Path]:
    """The commands the closing hint uses -> the binary to link into one PATH dir. On the local
    cluster all of them (its kubectl matches its version); on the user's cluster only those
    their PATH lacks, so their own kubectl is not shadowed."""
    wanted = {
        "kubectl": tools.kubectl,
        "kubectl-bullflow": venv_bin / "kubectl-bullflow",
        "helm": tools.helm,
    }
    return {name: path for name, path in wanted.items() if local_cluster or not on_path(name)}


def link_bin_dir(directory: Path, links: dict[str, Path]) -> Path | None:
    """A dir of symlinks to `links`: one PATH entry instead of the venv's bin (whose python
    and pip would shadow the user's) and the tool cache's version dirs."""
    if not links:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        link = directory / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return directory


def shell_lines(
    flow: str, kubeconfig: str, redis_url: str | None, bin_dir: Path | None
) -> list[str]:
    """What to paste into one's own shell to look at the flow after the demo."""
    lines = [f"export KUBECONFIG={shlex.quote(kubeconfig)}"]
    if redis_url:
        lines.append(f"export BULLFLOW_REDIS_URL={shlex.quote(redis_url)}")
    if bin_dir:
        lines.append(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"')
    return [
        *lines,
        f"kubectl get flows -n {NAMESPACE}",
        f"kubectl describe flow -n {NAMESPACE} {flow}",
        f"kubectl bullflow tree -n {NAMESPACE} {flow}",
    ]


def closing_notes(local_cluster: bool, release: tuple[str, str]) -> list[str]:
    notes = []
    if local_cluster:
        notes.append("the local cluster is left running; `make cluster-down` stops it")
    if release == (HELM_RELEASE, HELM_NAMESPACE):
        notes.append(
            f"the CRDs carry Helm's ownership for release {HELM_RELEASE} in namespace "
            f"{HELM_NAMESPACE}, so the chart adopts them; from the repo root: {HELM_INSTALL}"
        )
    else:
        notes.append(f"the CRDs belong to the Helm release {release[1]}/{release[0]}")
    return notes


def main() -> int:
    tools = ensure_tools()
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    env = dict(os.environ)
    local_cluster = not reachable(tools.kubectl, kubeconfig)
    if local_cluster:
        env.update(local_cluster_env())
    else:
        say(f"using the cluster of {kubeconfig}")
        env["KUBECONFIG"] = kubeconfig
    demo_redis = None
    if not env.get("BULLFLOW_REDIS_URL"):
        say("BULLFLOW_REDIS_URL is not set: a local redis-server for the length of the demo")
        demo_redis = RedisServer(run_dir() / "demo-redis")
        demo_redis.start()
        env["BULLFLOW_REDIS_URL"] = demo_redis.url
    try:
        rc, flow, release = run_demo(tools, env)
    finally:
        if demo_redis:
            demo_redis.stop()
    venv_bin = Path(sys.executable).parent  # not resolved: the venv's bin, not the base python's
    links = shell_tools(tools, venv_bin, local_cluster, shutil.which)
    bin_dir = link_bin_dir(run_dir() / "bin", links)
    redis_left = None if demo_redis else env["BULLFLOW_REDIS_URL"]
    say("to look at it from your shell:")
    print("\n".join(shell_lines(flow, env["KUBECONFIG"], redis_left, bin_dir)), flush=True)
    for note in closing_notes(local_cluster, release):
        say(note)
    return rc


def run_demo(tools: Tools, env: dict[str, str]) -> tuple[int, str, tuple[str, str]]:
    """Applies the CRDs and the example Flow, runs it; returns (exit code, Flow name, the Helm
    release the CRDs belong to)."""

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
    templated, plain = crd_documents()
    existing = kubectl("get", "-f", str(ROOT / "crds"), "--ignore-not-found", "-o", "json")
    found = json.loads(existing) if existing.strip() else {}
    # One object found comes back as itself, several as a List.
    release = owning_release(found.get("items", [found] if found else []))
    owned = [*helm_owned(templated, *release), *plain]
    kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(owned)
    )
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    subprocess.run(
        [str(tools.kubectl), "create", "namespace", NAMESPACE], env=env, capture_output=True
    )
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = f"order-{uuid.uuid4().hex[:5]}"
    queues = sorted(_queues(doc["spec"]["root"]))
    bin_dir = Path(sys.executable).parent
    logs = run_dir() / "demo-logs"
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
                PROCESSOR,
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
        return follow(kubectl, doc), doc["metadata"]["name"], release
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


def follow(kubectl: Callable[..., str], doc: dict) -> int:
    name = doc["metadata"]["name"]
    deadline = time.monotonic() + 120
    shown = None
    while time.monotonic() < deadline:
        flow = json.loads(kubectl("get", "flow", name, "-n", NAMESPACE, "-o", "json"))
        status = flow.get("status") or {}
        # The same drawing as `kubectl bullflow tree`, without its clock-driven lines, so that
        # a frame is printed only when the flow changed.
        frame = render_tree({**flow, "status": {**status, "submittedAt": None}})
        if frame != shown:
            print(frame, flush=True)
            shown = frame
        if status.get("phase") in ("Completed", "Failed"):
            print(kubectl("get", "flows", "-n", NAMESPACE))
            say(f"result: {json.dumps(status.get('result'))}")
            return 0 if status["phase"] == "Completed" else 1
        time.sleep(0.3)
    say("the flow did not finish in 120 s")
    return 1


def _queues(node: dict) -> set[str]:
    return {node["queueName"]}.union(*(_queues(c) for c in node.get("children", [])))


if __name__ == "__main__":
    sys.exit(main())
