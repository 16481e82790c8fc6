"""`helm install` on the real control plane, then the real operator with the chart's ServiceAccount
identity: its RBAC is enough for a full Flow scenario, and no more than needed.

The operator pod that the chart creates is scheduled on a kwok fake node (it does not really run).
The real operator runs as a local process with a kubeconfig holding a token of the chart's
ServiceAccount (TokenRequest API), i.e. exactly the identity the pod would have. (A kubeconfig
`as:` impersonation entry is not honoured by the Python clients kopf and bullflow use, so the
token is the faithful way; kubectl's --as impersonation is used for the `auth can-i` checks.)
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from bullflow.crdgen import SPEC_IMMUTABLE_POLICY
from tests.e2e.flows import Flows, condition, load_example, nodes_by_name, queues_of
from tests.e2e.operator_proc import OperatorProcess, WorkerSet
from tests.e2e.workerpool_support import (
    Pools,
    job_counts,
    pool_doc,
    read_exec_log,
    worker_supervisor,
)
from tests.e2e.workerpool_support import (
    condition as pool_condition,
)
from tests.harness.cluster import LocalCluster
from tests.harness.redis import RedisServer
from tests.harness.tools import Tools

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = re.compile(r"\b403\b|[Ff]orbidden")
CHART = ROOT / "charts" / "bullflow"
RELEASE = "bf"
# What crds.install installs (kind, name): the CRDs and the Flow spec's admission policy.
CRDS = (
    ("crd", "flows.bullflow.io"),
    ("crd", "workerpools.bullflow.io"),
    ("crd", "flowtemplates.bullflow.io"),
    ("crd", "cronflows.bullflow.io"),
    ("validatingadmissionpolicy", SPEC_IMMUTABLE_POLICY),
    ("validatingadmissionpolicybinding", SPEC_IMMUTABLE_POLICY),
)


@dataclass
class Release:
    namespace: str  # the release (operator) namespace
    watched: str  # the only namespace the operator watches
    other: str  # a namespace it must not touch
    service_account: str
    kubeconfig: Path  # the admin kubeconfig

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def helm(tools: Tools, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(tools.helm), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc


@pytest.fixture(scope="module")
def release(
    flow_crds: None,
    local_cluster: LocalCluster,
    harness_tools: Tools,
    kubectl: Any,
    redis_server: RedisServer,
) -> Iterator[Release]:
    base = f"chart-e2e-{uuid.uuid4().hex[:6]}"
    rel = Release(
        base, f"{base}-w", f"{base}-other", f"{RELEASE}-bullflow", local_cluster.kubeconfig
    )
    for ns in (rel.namespace, rel.watched, rel.other):
        kubectl("create", "namespace", ns)
    # The CRDs already exist (applied by the e2e session from crds/): let this release adopt them,
    # as a user moving from `kubectl apply -f crds/` to the chart would.
    for kind, name in CRDS:
        kubectl(
            "annotate",
            "--overwrite",
            kind,
            name,
            f"meta.helm.sh/release-name={RELEASE}",
            f"meta.helm.sh/release-namespace={rel.namespace}",
        )
        kubectl("label", "--overwrite", kind, name, "app.kubernetes.io/managed-by=Helm")
    started = time.monotonic()
    helm(
        harness_tools,
        rel.kubeconfig,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        rel.namespace,
        "--set",
        f"watchNamespaces={{{rel.watched}}}",
        "--set",
        f"redis.url={redis_server.url}",
        # Validated by the real API server at install (tests/integration/test_chart.py checks
        # its shape).
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.egress.enabled=true",
        "--wait",
        "--timeout=120s",
    )
    print(f"helm install --wait took {time.monotonic() - started:.1f}s")
    yield rel
    subprocess.run(
        [
            str(harness_tools.helm),
            f"--kubeconfig={rel.kubeconfig}",
            "uninstall",
            RELEASE,
            "-n",
            rel.namespace,
        ],
        capture_output=True,
        check=False,
    )
    for ns in (rel.namespace, rel.watched, rel.other):
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def service_account_kubeconfig(rel: Release, kubectl: Any, path: Path) -> Path:
    """A kubeconfig whose user is the chart's ServiceAccount (a TokenRequest token)."""
    token = kubectl(
        "create", "token", rel.service_account, "-n", rel.namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(rel.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "bullflow-operator", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "sa",
                        "context": {"cluster": cluster["name"], "user": "bullflow-operator"},
                    }
                ],
                "current-context": "sa",
            }
        )
    )
    return path


def test_chart_objects_in_cluster(release: Release, kubectl: Any, kube_client: Any) -> None:
    pods = client.CoreV1Api(kube_client).list_namespaced_pod(
        release.namespace, label_selector="app.kubernetes.io/component=operator"
    )
    assert [p.status.phase for p in pods.items] == ["Running"]
    pod = pods.items[0]
    container = pod.spec.containers[0]
    assert container.args[-1] == "--standalone"
    assert f"--namespace={release.watched}" in container.args
    assert container.security_context.read_only_root_filesystem is True
    assert pod.spec.service_account_name == release.service_account
    for kind, name in CRDS:
        out = kubectl("get", kind, name, "-o", "yaml").stdout
        assert "helm.sh/resource-policy: keep" in out


def test_network_policy_installed(release: Release, kubectl: Any) -> None:
    policy = yaml.safe_load(
        kubectl(
            "get", "networkpolicy", f"{RELEASE}-bullflow", "-n", release.namespace, "-o", "yaml"
        ).stdout
    )
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    pods = kubectl(
        "get",
        "pods",
        "-n",
        release.namespace,
        "-o",
        "name",
        "-l",
        ",".join(f"{k}={v}" for k, v in policy["spec"]["podSelector"]["matchLabels"].items()),
    ).stdout.split()
    assert len(pods) == 1, pods  # it selects the operator pod


def test_helm_test_hook_checks_a_real_operator(
    release: Release,
    harness_tools: Tools,
    kubectl: Any,
    local_cluster: LocalCluster,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """The release's `helm test` pod is accepted by the API server (restricted settings), and its
    check, run here against a real operator's health and metrics endpoints, passes; it fails on
    an endpoint without bullflow's metrics. (kwok pods do not run, so `helm test` itself would
    wait forever.)"""
    hooks = helm(
        harness_tools, release.kubeconfig, "get", "hooks", RELEASE, "-n", release.namespace
    )
    (pod,) = [d for d in yaml.safe_load_all(hooks.stdout) if d and d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    dry_run = kubectl(
        "apply", "--dry-run=server", "-n", release.namespace, "-f", "-", input=yaml.safe_dump(pod)
    )
    assert "created (server dry run)" in dry_run.stdout, dry_run.stdout + dry_run.stderr
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    (tmp_path / "operator").mkdir()
    operator = OperatorProcess(
        local_cluster.kubeconfig,
        redis_server.url,
        tmp_path / "operator",
        namespaces=[release.watched],
    ).start()
    try:
        assert operator.proc is not None
        health = next(a for a in operator.proc.argv if a.startswith("--liveness=")).partition("=")[
            2
        ]
        metrics = f"http://127.0.0.1:{operator.metrics_port}/metrics"
        check = [sys.executable, "-c", command[2]]
        ok = subprocess.run([*check, health, metrics], capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.splitlines() == [f"ok {health}", f"ok {metrics}"]
        wrong = subprocess.run(
            [*check, health, health], capture_output=True, text=True, timeout=120
        )
        assert wrong.returncode != 0 and "no bullflow_ metric" in wrong.stderr, wrong
    finally:
        operator.stop()


def test_rbac_is_sufficient_for_flows(
    release: Release,
    kubectl: Any,
    kube_client: Any,
    redis_server: RedisServer,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    kubeconfig = service_account_kubeconfig(release, kubectl, tmp_path / "sa.kubeconfig")
    whoami = kubectl("auth", "whoami", f"--kubeconfig={kubeconfig}", "-o", "yaml").stdout
    assert release.user in whoami
    operator = OperatorProcess(
        kubeconfig, redis_server.url, tmp_path / "operator", namespaces=[release.watched]
    )
    (tmp_path / "operator").mkdir()
    workers = WorkerSet(redis_server.url, tmp_path)
    flows = Flows(kube_client, kubectl, release.watched)
    operator.start()
    try:
        started = time.monotonic()
        # 1. A flow that completes (default Redis from the chart's Secret... here the operator's
        #    env, as the chart's Deployment would set it).
        basic = load_example("basic.yaml", redis_prefix)
        # 2. A flow that fails (Events, Failed condition).
        failing = load_example("failure-none.yaml", redis_prefix)
        # 3. A flow with spec.connection (reads a Secret) and a TTL (deletes the Flow).
        conn = load_example("etl.yaml", redis_prefix)
        conn["metadata"]["name"] = "with-connection"
        conn["spec"]["connection"] = {"name": "redis-conn", "key": "url"}
        conn["spec"]["ttlSecondsAfterFinished"] = 1
        kubectl(
            "create",
            "secret",
            "generic",
            "redis-conn",
            "-n",
            release.watched,
            f"--from-literal=url={redis_server.url}",
        )
        queues = queues_of(basic) | queues_of(failing) | queues_of(conn)
        workers.start("python", sorted(queues), redis_prefix)
        for doc in (basic, failing, conn):
            flows.apply(doc)
        done = flows.wait("basic", timeout=60)
        assert done["status"]["phase"] == "Completed" and done["status"]["result"] == 42
        failed = flows.wait("failure-none", timeout=60)
        assert failed["status"]["phase"] == "Failed"
        assert "card declined" in condition(failed, "Failed")["message"]
        assert nodes_by_name(failed)["bad-child"]["state"] == "failed"
        # TTL: the operator deleted the finished Flow (delete verb on flows).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = kubectl(
                "get",
                "flow",
                "with-connection",
                "-n",
                release.watched,
                "--ignore-not-found",
                "-o",
                "name",
            ).stdout.strip()
            if not got:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the Flow with a TTL was not deleted by the operator")
        print(f"3 flows with the chart's RBAC: {time.monotonic() - started:.1f}s")
        # Events were written with the ServiceAccount's rights.
        events = kubectl("get", "events", "-n", release.watched, "-o", "yaml").stdout
        assert "bullflow-operator" in events and "failure-none" in events
        assert_no_forbidden(operator)
    finally:
        workers.stop()
        operator.stop()


def assert_no_forbidden(operator: OperatorProcess) -> None:
    forbidden = [line for line in operator.log_text().splitlines() if FORBIDDEN.search(line)]
    assert not forbidden, "\n".join(forbidden[:20])


def test_rbac_is_sufficient_for_workerpools(
    release: Release,
    local_cluster: LocalCluster,
    kubectl: Any,
    kube_client: Any,
    redis_server: RedisServer,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    """A WorkerPool under the chart's identity: the operator creates the owned Deployment
    (server-side apply), scales it 0 -> up -> 0 (pod-deletion-cost on the way down), watches it,
    writes status and Events; and scales a user's StatefulSet through its scale subresource.
    Real workers (one per Ready pod) run the Flow's jobs, each exactly once."""
    kubeconfig = service_account_kubeconfig(release, kubectl, tmp_path / "sa.kubeconfig")
    (tmp_path / "operator").mkdir()
    operator = OperatorProcess(
        kubeconfig, redis_server.url, tmp_path / "operator", namespaces=[release.watched]
    )
    pools = Pools(kube_client, kubectl, release.watched)
    flows = Flows(kube_client, kubectl, release.watched)
    exec_log = tmp_path / "executions.log"
    queues = ["wp-parent", "wp-child"]
    pools.apply(
        pool_doc(
            "chart-pool",
            queues,
            redis_prefix,
            worker={"processor": "bullflow_worker.processors:count_executions", "concurrency": 2},
            scaling={
                "minReplicas": 0,
                "maxReplicas": 3,
                "jobsPerReplica": 2,
                "scaleDownStabilizationSeconds": 2,
                "pollIntervalSeconds": 1,
            },
        )
    )
    # A user's StatefulSet (Node.js workers, say), scaled through statefulsets/scale only.
    kubectl(
        "apply",
        "-n",
        release.watched,
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "user-workers"},
                "spec": {
                    "replicas": 0,
                    "serviceName": "user-workers",
                    "selector": {"matchLabels": {"app": "user-workers"}},
                    "template": {
                        "metadata": {"labels": {"app": "user-workers"}},
                        "spec": {"containers": [{"name": "w", "image": "example/worker:1"}]},
                    },
                },
            }
        ),
    )
    pools.apply(
        pool_doc(
            "sts-pool",
            ["wp-nobody"],
            redis_prefix,
            scaleTargetRef={"kind": "StatefulSet", "name": "user-workers"},
            scaling={"minReplicas": 1, "maxReplicas": 2, "pollIntervalSeconds": 1},
        )
    )
    children = [{"name": f"c{i}", "queueName": "wp-child", "data": {"i": i}} for i in range(8)]
    flow = {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": "pooled"},
        "spec": {
            "prefix": redis_prefix,
            "root": {"name": "root", "queueName": "wp-parent", "children": children},
        },
    }
    apps = client.AppsV1Api(kube_client)
    operator.start()
    try:
        t0 = time.monotonic()
        dep = "chart-pool-workers"
        pools.wait_for("the owned Deployment at 0", lambda: pools.replicas(dep) == 0, 60)
        created = time.monotonic() - t0
        pools.wait_for(
            "the StatefulSet scaled to 1",
            lambda: (
                apps.read_namespaced_stateful_set("user-workers", release.watched).spec.replicas
                == 1
            ),
            60,
        )
        with worker_supervisor(
            local_cluster.kubeconfig,
            release.watched,
            "bullflow.io/workerpool=chart-pool",
            {"BULLFLOW_REDIS_URL": redis_server.url, "BULLFLOW_EXEC_LOG": str(exec_log)},
            tmp_path / "pods",
        ) as sup:
            t1 = time.monotonic()
            flows.apply(flow)
            peak = 0

            def scaled_up() -> bool:
                nonlocal peak
                peak = max(peak, pools.replicas(dep) or 0)
                return peak >= 2

            pools.wait_for("replicas going up", scaled_up, 60, every=0.05)
            up = time.monotonic() - t1
            done = flows.wait("pooled", timeout=40)
            assert done["status"]["phase"] == "Completed", done["status"]
            completed = time.monotonic() - t1
            pools.wait_for("replicas back to 0", lambda: pools.replicas(dep) == 0, 30)
            sup.wait_for_running(0, timeout=30)
            back = time.monotonic() - t1
        counts = collections.Counter(read_exec_log(exec_log))
        assert len(counts) == 9 and max(counts.values()) == 1, counts
        for queue, expected in (("wp-parent", 1), ("wp-child", 8)):
            final = job_counts(redis_server.url, redis_prefix, queue)
            assert final["completed"] == expected and final["failed"] == 0, (queue, final)
        assert sup.exit_codes() and all(
            code == 0 for codes in sup.exit_codes().values() for code in codes
        ), sup.exit_codes()
        status = pools.wait_status(
            "chart-pool",
            lambda s: s.get("replicas") == 0 and "-> 0" in s.get("lastScaleReason", ""),
            "status at 0",
            10,
        )
        assert pool_condition(status, "ScalingActive")["status"] == "True", status
        sts = pools.get("sts-pool")["status"]
        assert sts["target"] == "StatefulSet/user-workers" and sts["replicas"] == 1, sts
        events = kubectl("get", "events", "-n", release.watched, "-o", "yaml").stdout
        assert "ScaledUp" in events and "ScaledDown" in events
        assert_no_forbidden(operator)
        print(
            f"\n[chart RBAC workerpool] Deployment created {created:.2f}s after start, "
            f"{peak} replicas {up:.2f}s after the Flow, completed {completed:.2f}s, "
            f"back to 0 {back:.2f}s"
        )
    except AssertionError as err:  # what the operator did (or failed to do) meanwhile
        tail = operator.log_text()[-6000:]
        raise AssertionError(f"{err}\n--- operator log (tail) ---\n{tail}") from err
    finally:
        # While the operator still runs: it removes its finalizers (and the Flow's jobs).
        kubectl(
            "delete",
            "workerpool,flow,statefulset",
            "--all",
            "-n",
            release.watched,
            "--timeout=30s",
            check=False,
        )
        operator.stop()


@pytest.mark.parametrize(
    ("verb", "resource", "where", "allowed"),
    [
        ("get", "secrets", "watched", True),
        ("list", "secrets", "watched", False),
        ("watch", "secrets", "watched", False),
        ("get", "secrets", "other", False),
        ("get", "secrets", "release", False),
        # The Secret holding the default Redis URL of a WorkerPool without spec.connection.
        ("create", "secrets", "watched", True),
        ("update", "secrets", "watched", True),
        ("patch", "secrets", "watched", False),
        ("delete", "secrets", "watched", False),
        ("create", "secrets", "other", False),
        ("patch", "flows.bullflow.io", "watched", True),
        ("patch", "flows.bullflow.io/status", "watched", True),
        ("patch", "workerpools.bullflow.io/status", "watched", True),
        ("update", "flows.bullflow.io/status", "watched", False),
        ("delete", "flows.bullflow.io", "watched", True),
        # A CronFlow's runs: the operator creates them (never in another namespace).
        ("create", "flows.bullflow.io", "watched", True),
        ("create", "flows.bullflow.io", "other", False),
        ("patch", "cronflows.bullflow.io/status", "watched", True),
        ("update", "cronflows.bullflow.io", "watched", False),
        ("delete", "cronflows.bullflow.io", "watched", False),
        ("get", "flows.bullflow.io", "other", False),
        ("list", "flows.bullflow.io", "all", False),
        ("create", "events", "watched", True),
        ("create", "events", "other", False),
        ("create", "deployments.apps", "watched", True),
        ("patch", "deployments.apps", "watched", True),
        ("watch", "deployments.apps", "watched", True),
        ("delete", "deployments.apps", "watched", False),
        ("update", "deployments.apps", "watched", False),
        ("patch", "deployments.apps/scale", "watched", True),
        ("create", "deployments.apps", "other", False),
        ("get", "statefulsets.apps", "watched", True),
        ("patch", "statefulsets.apps", "watched", False),
        ("patch", "statefulsets.apps/scale", "watched", True),
        ("patch", "daemonsets.apps", "watched", False),
        ("update", "workerpools.bullflow.io/finalizers", "watched", True),
        ("delete", "workerpools.bullflow.io", "watched", False),
        ("update", "flows.bullflow.io", "watched", False),
        ("delete", "pods", "watched", False),
        ("list", "pods", "watched", True),
        ("patch", "pods", "watched", True),
        ("patch", "events", "watched", False),
        ("create", "pods/exec", "watched", False),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", "cluster", True),
        ("update", "customresourcedefinitions.apiextensions.k8s.io", "cluster", False),
        ("delete", "nodes", "cluster", False),
        ("get", "nodes", "cluster", False),
        ("create", "clusterroles.rbac.authorization.k8s.io", "cluster", False),
        ("create", "rolebindings.rbac.authorization.k8s.io", "watched", False),
        ("delete", "namespaces", "cluster", False),
    ],
)
def test_rbac_is_not_excessive(
    release: Release,
    kubectl: Any,
    verb: str,
    resource: str,
    where: str,
    allowed: bool,
) -> None:
    scope = {
        "watched": ["-n", release.watched],
        "other": ["-n", release.other],
        "release": ["-n", release.namespace],
        "all": ["--all-namespaces"],
        "cluster": [],
    }[where]
    # `can-i patch deployments.apps/scale` would ask about a Deployment *named* scale.
    resource, _, subresource = resource.partition("/")
    sub = [f"--subresource={subresource}"] if subresource else []
    proc = kubectl(
        "auth", "can-i", verb, resource, *sub, *scope, f"--as={release.user}", check=False
    )
    assert proc.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, where, proc)


def test_rbac_list_has_no_wildcards(release: Release, kubectl: Any) -> None:
    out = kubectl("auth", "can-i", "--list", "-n", release.watched, f"--as={release.user}").stdout
    for line in out.splitlines()[1:]:
        resource = line.split()[0] if line.split() else ""
        # The built-in discovery/self-review rules every authenticated user has are fine.
        if resource.startswith(("selfsubject", "[/")):
            continue
        assert "*" not in line, line


def test_upgrade_with_changed_crd_updates_it(
    release: Release,
    harness_tools: Tools,
    kubectl: Any,
    tmp_path: Path,
) -> None:
    chart = tmp_path / "bullflow"
    shutil.copytree(CHART, chart)
    crd = chart / "templates" / "crds" / "flows.bullflow.io.yaml"
    text = crd.read_text()
    anchor = "    additionalPrinterColumns:\n"
    assert anchor in text
    crd.write_text(
        text.replace(
            anchor,
            anchor
            + (
                "    - name: UpgradeProbe\n      type: string\n      jsonPath: .spec.prefix\n"
                "      priority: 1\n"
            ),
            1,
        )
    )

    def columns() -> list[str]:
        out = kubectl(
            "get",
            "crd",
            "flows.bullflow.io",
            "-o",
            "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}",
        ).stdout
        return out.split()

    assert "UpgradeProbe" not in columns()
    helm(
        harness_tools,
        release.kubeconfig,
        "upgrade",
        RELEASE,
        str(chart),
        "-n",
        release.namespace,
        "--reuse-values",
    )
    assert columns()[0] == "UpgradeProbe"
    helm(
        harness_tools,
        release.kubeconfig,
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        release.namespace,
        "--reuse-values",
    )
    assert "UpgradeProbe" not in columns()


def test_uninstall_keeps_crds_and_flows(
    release: Release,
    harness_tools: Tools,
    kubectl: Any,
) -> None:
    kubectl(
        "apply",
        "-n",
        release.watched,
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "bullflow.io/v1alpha1",
                "kind": "Flow",
                "metadata": {"name": "survivor"},
                "spec": {"root": {"name": "x", "queueName": "nobody-listens"}},
            }
        ),
    )
    before = set(kubectl("get", "flows", "-n", release.watched, "-o", "name").stdout.split())
    assert "flow.bullflow.io/survivor" in before
    helm(harness_tools, release.kubeconfig, "uninstall", RELEASE, "-n", release.namespace, "--wait")
    for kind, name in CRDS:
        kubectl("get", kind, name)
    after = set(kubectl("get", "flows", "-n", release.watched, "-o", "name").stdout.split())
    assert before == after
    gone = kubectl(
        "get",
        "deployment,serviceaccount",
        "-n",
        release.namespace,
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "-o",
        "name",
    ).stdout
    assert gone.strip() == ""
    assert kubectl("get", "clusterrole", f"{RELEASE}-bullflow-cluster", check=False).returncode != 0
