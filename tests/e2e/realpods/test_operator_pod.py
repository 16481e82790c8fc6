"""The Helm-installed operator as a real pod and WorkerPools of real worker containers, on the
real node: probes, non-root read-only container, Flows to Completed, the metrics Service over
the cluster network, a busy pool's scale-down (real SIGTERM), a killed operator container and a
`helm upgrade` to a new tag, none losing or repeating a job.

One release for the module (installing it costs an image import and a pod start); the tests
that restart the operator run last, in file order.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis as redis_sync

from tests.e2e.flows import Flows
from tests.e2e.realpods.chart_release import (
    CHART,
    OPERATOR_REPOSITORY,
    OPERATOR_UID,
    REDIS_PASSWORD,
    RELEASE,
    WORKER_IMAGE,
    OperatorRelease,
    assert_each_job_ran_once,
    build_images,
    job_events,
    real_pool,
    sleepy_flow,
)
from tests.e2e.workerpool_support import Pools, activity, add_jobs, job_counts
from tests.harness import node_config as cfg
from tests.harness.cluster import LocalCluster
from tests.harness.fixtures import Kubectl
from tests.harness.node import RealNode
from tests.harness.process import wait_for
from tests.harness.redis import RedisServer
from tests.harness.tools import Tools

FLOW_QUEUES = ["rp-parent", "rp-child"]
# Of the scaled-down workers: far above their 10 s jobs, so a worker that exits within it
# exited on SIGTERM, not on the kubelet's SIGKILL at its end.
GRACE_SECONDS = 300


@pytest.fixture(scope="module")
def release(
    local_cluster: LocalCluster,
    real_node: RealNode,
    harness_tools: Tools,
    kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorRelease]:
    started = time.monotonic()
    archives = build_images()
    built = time.monotonic()
    for archive in archives.values():
        real_node.import_image(archive)
    imported = time.monotonic()
    server = RedisServer(
        tmp_path_factory.mktemp("redis-rp"), password=REDIS_PASSWORD, also_bind=(cfg.NODE_IP,)
    )
    server.start()
    namespace = f"bullflow-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    rel = OperatorRelease(
        namespace, server, harness_tools, local_cluster.kubeconfig, kubectl, real_node
    )
    try:
        rel.helm("install", RELEASE, str(CHART), *rel.install_args("dev"))
        rel.wait_operator_ready()
        print(
            f"images checked/built in {built - started:.1f}s, imported in {imported - built:.1f}s, "
            f"helm install --wait in {time.monotonic() - imported:.1f}s"
        )
        yield rel
    finally:
        rel.helm("uninstall", RELEASE, "--wait", "--timeout=120s")
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        server.stop()


@pytest.fixture
def prefix() -> str:
    return f"rp{uuid.uuid4().hex[:8]}"


def pods_of_pool(kubectl: Kubectl, namespace: str, pool: str) -> list[dict[str, Any]]:
    """The pool's worker pods that are not being deleted."""
    out = kubectl(
        "get", "pods", "-n", namespace, "-l", f"bullflow.io/workerpool={pool}", "-o", "json"
    ).stdout
    items = json.loads(out)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready_pods(kubectl: Kubectl, namespace: str, pool: str, count: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        pods = pods_of_pool(kubectl, namespace, pool)
        ok = [
            p
            for p in pods
            if any(s.get("ready") for s in p["status"].get("containerStatuses") or [])
        ]
        return ok if len(ok) == count == len(pods) else None

    return cast(list[dict[str, Any]], wait_for(ready, 240, f"{count} ready pods of {pool}", 1))


def wait_flow(release: OperatorRelease, flows: Flows, name: str) -> dict[str, Any]:
    try:
        return flows.wait(name, timeout=300)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{release.diagnosis()}") from None


def test_operator_pod_is_ready_non_root_read_only_and_runs_a_flow_on_real_workers(
    release: OperatorRelease, kubectl: Kubectl, kube_client: Any, namespace: str, prefix: str
) -> None:
    pod = release.wait_operator_ready()
    assert pod["spec"]["nodeName"] == cfg.NODE_NAME
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"{OPERATOR_REPOSITORY}:dev"
    # Ready means the kubelet's own readiness probe (GET /healthz) passed.
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    url_env = next(e for e in container["env"] if e["name"] == "BULLFLOW_REDIS_URL")
    assert "secretKeyRef" in url_env["valueFrom"]

    status = release.operator_exec("cat", "/proc/1/status").stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uid_line.split()[1:]) == {str(OPERATOR_UID)}
    mounts = release.operator_exec("cat", "/proc/1/mounts").stdout.splitlines()
    root = [line.split() for line in mounts if line.split()[1] == "/"]
    assert root and root[-1][3].split(",")[0] == "ro", root
    write = release.operator_exec("touch", "/written-at-runtime")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write
    assert release.operator_exec("touch", "/tmp/scratch").returncode == 0

    pools = Pools(kube_client, kubectl, namespace)
    pools.apply(real_pool("workers", FLOW_QUEUES, prefix))
    flows = Flows(kube_client, kubectl, namespace)
    flows.apply(sleepy_flow("real", prefix, children=3, seconds=0))
    flow = wait_flow(release, flows, "real")
    assert flow["status"]["phase"] == "Completed", flow["status"]
    assert flow["status"]["result"] == 0 + 1 + 2

    # The pool's one pod, running (a rollout of the pool's Deployment may have replaced the pod
    # that ran the jobs: its successor has no container id until it starts).
    [worker] = ready_pods(kubectl, namespace, "workers", 1)
    assert worker["spec"]["nodeName"] == cfg.NODE_NAME
    worker_status = worker["status"]["containerStatuses"][0]
    assert worker_status["containerID"].startswith("containerd://")
    assert worker["spec"]["containers"][0]["image"] == WORKER_IMAGE
    assert worker_status["imageID"], "the kubelet ran the imported image"
    assert_each_job_ran_once(job_events(release.redis.url, prefix, FLOW_QUEUES), 4)
    # The operator and the worker talk to Redis from their pod addresses, with the password
    # the operator read from its Secret (and handed the workers through theirs).
    r = redis_sync.Redis.from_url(release.redis.url, decode_responses=True)
    try:
        clients = {c["addr"].rsplit(":", 1)[0] for c in r.client_list()}
    finally:
        r.close()
    assert {pod["status"]["podIP"], worker["status"]["podIP"]} <= clients


def test_metrics_service_answers_through_the_cluster_network(
    release: OperatorRelease, kubectl: Kubectl, kube_client: Any, namespace: str, prefix: str
) -> None:
    service = json.loads(
        kubectl(
            "get", "service", "-n", release.namespace, f"{RELEASE}-bullflow-metrics", "-o", "json"
        ).stdout
    )
    metrics_url = f"http://{service['spec']['clusterIP']}:9090/metrics"
    Pools(kube_client, kubectl, namespace).apply(real_pool("probe", ["rp-probe"], prefix))
    [worker] = ready_pods(kubectl, namespace, "probe", 1)
    fetch = f"import urllib.request; print(urllib.request.urlopen({metrics_url!r}).read().decode())"
    # The operator's gauge of this very pool, so the answer comes from the live operator.
    labels = f'name="probe",namespace="{namespace}",which="ready"'  # sorted, as rendered
    ready_gauge = f"bullflow_workerpool_replicas{{{labels}}} 1.0"
    answers: list[str] = []

    def from_pod() -> bool:
        out = kubectl(
            "exec", "-n", namespace, worker["metadata"]["name"], "--", "python", "-c", fetch,
            check=False,
        )  # fmt: skip
        answers.append(out.stdout if out.returncode == 0 else out.stderr)
        return ready_gauge in out.stdout

    def from_host() -> bool:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            answers.append(text := response.read().decode())
        return ready_gauge in text

    # pod or host -> ClusterIP (kube-proxy's DNAT) -> the operator pod
    for where, fetched in (("host", from_host), ("a worker pod", from_pod)):
        try:
            wait_for(fetched, 60, f"{ready_gauge} from {where}", 1)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last answer:\n{answers[-1:]}") from None
    assert "bullflow_flows" in answers[-1]


def test_a_worker_image_not_on_the_node_shows_in_the_pools_ready_condition(
    release: OperatorRelease, kubectl: Kubectl, kube_client: Any, namespace: str, prefix: str
) -> None:
    pools = Pools(kube_client, kubectl, namespace)
    missing = "localhost/bullflow-worker:not-built-here"
    pools.apply(real_pool("unpullable", ["rp-unpullable"], prefix, image=missing))

    def ready_condition() -> dict[str, Any] | None:
        """Ready with ErrImageNeverPull naming the pool's one pod, read together: a pod
        replaced meanwhile (or still terminating) makes the two disagree for a moment."""
        status = pools.get("unpullable").get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        if not ready or ready[0]["reason"] != "ErrImageNeverPull":
            return None
        pods = pods_of_pool(kubectl, namespace, "unpullable")
        names = [p["metadata"]["name"] for p in pods]
        prefix = f"0/1 replicas ready; pod {names[0]}: " if len(names) == 1 else None
        return ready[0] if prefix and ready[0]["message"].startswith(prefix) else None

    try:
        ready = cast(dict[str, Any], wait_for(ready_condition, 120, "ErrImageNeverPull", 1))
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {pools.get('unpullable').get('status')}") from None
    assert ready["status"] == "False"
    assert missing in ready["message"], ready["message"]


def test_busy_pool_scale_down_drains_on_sigterm_and_keeps_the_busiest_pod(
    release: OperatorRelease, kubectl: Kubectl, kube_client: Any, namespace: str, prefix: str
) -> None:
    pools = Pools(kube_client, kubectl, namespace)
    scaling = {
        "minReplicas": 3,
        "maxReplicas": 3,
        "jobsPerReplica": 1,
        "scaleDownStabilizationSeconds": 0,
        "pollIntervalSeconds": 1,
    }
    pool = real_pool(
        "drain", ["rp-drain"], prefix,
        concurrency=2, scaling=scaling, terminationGracePeriodSeconds=GRACE_SECONDS,
    )  # fmt: skip
    pools.apply(pool)
    pods = [p["metadata"]["name"] for p in ready_pods(kubectl, namespace, "drain", 3)]
    jobs = 5
    add_jobs(
        release.redis.url,
        prefix,
        "rp-drain",
        [(f"j{i}", {"sleepSeconds": 10, "result": i}) for i in range(jobs)],
    )

    def busy() -> dict[str, int] | None:
        counts = {
            p: int(v) for p, v in activity(release.redis.url, prefix, namespace, pods).items()
        }
        return counts if sum(counts.values()) == jobs else None

    active_by_pod = cast(dict[str, int], wait_for(busy, 60, "5 jobs active on the workers", 0.2))
    # One pod stays when the jobs are done too (minReplicas 0 would scale the pool to zero).
    pools.patch_spec("drain", {"scaling": {"minReplicas": 1, "maxReplicas": 1}})
    [kept] = cast(
        list[dict[str, Any]],
        wait_for(
            lambda: (p := pods_of_pool(kubectl, namespace, "drain")) and len(p) == 1 and p,
            60,
            "the pool scaled down to one pod",
            0.5,
        ),
    )
    kept_name = kept["metadata"]["name"]
    assert active_by_pod.get(kept_name, 0) == max(active_by_pod.values()), active_by_pod
    removed = [p for p in pods if p != kept_name]
    assert any(active_by_pod.get(p, 0) for p in removed), "a removed pod was busy"

    # The kubelet stops each removed pod's container (SIGTERM); its jobs finish on it (none is
    # handed to the kept pod as stalled, none is lost) and it exits by itself, long before
    # the grace period would have it killed.
    def all_pods() -> list[str]:
        out = kubectl("get", "pods", "-n", namespace, "-l", "bullflow.io/workerpool=drain")
        return [line.split()[0] for line in out.stdout.splitlines()[1:]]

    wait_for(lambda: all_pods() == [kept_name], GRACE_SECONDS * 0.8, "removed pods gone", 0.5)
    events = json.loads(
        kubectl(
            "get", "events", "-n", namespace, "--field-selector=reason=Killing", "-o", "json"
        ).stdout
    )["items"]
    killed = [(e["involvedObject"]["name"], e["message"], e["lastTimestamp"]) for e in events]
    assert {pod for pod, _, _ in killed} == set(removed), (kept_name, killed)
    assert job_counts(release.redis.url, prefix, "rp-drain")["completed"] == jobs
    assert_each_job_ran_once(job_events(release.redis.url, prefix, ["rp-drain"]), jobs)


def test_killed_operator_container_restarts_and_flows_finish_once(
    release: OperatorRelease, kubectl: Kubectl, kube_client: Any, namespace: str, prefix: str
) -> None:
    pools = Pools(kube_client, kubectl, namespace)
    pools.apply(real_pool("workers", FLOW_QUEUES, prefix, concurrency=4))
    ready_pods(kubectl, namespace, "workers", 1)
    flows = Flows(kube_client, kubectl, namespace)
    flows.apply(sleepy_flow("before-kill", prefix, children=4, seconds=6))
    wait_for(
        lambda: job_counts(release.redis.url, prefix, "rp-child")["active"] > 0,
        120,
        "children running",
        0.2,
    )
    pod = release.operator_pod()
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    release.node.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)
    # A Flow created while no operator runs waits for the restarted one.
    flows.apply(sleepy_flow("during-kill", prefix, children=2, seconds=1))

    def restarted() -> bool:
        status = release.operator_pod()["status"]["containerStatuses"][0]
        return bool(status["restartCount"] > restarts and status.get("ready"))

    wait_for(restarted, 240, "the operator container restarted and Ready", 1)
    after = release.operator_pod()
    assert after["metadata"]["uid"] == pod["metadata"]["uid"], "the kubelet restarted it in place"
    for name, result in (("before-kill", 0 + 1 + 2 + 3), ("during-kill", 0 + 1)):
        flow = wait_flow(release, flows, name)
        assert flow["status"]["phase"] == "Completed", flow["status"]
        assert flow["status"]["result"] == result
    assert_each_job_ran_once(job_events(release.redis.url, prefix, FLOW_QUEUES), 5 + 3)


def test_helm_upgrade_to_a_new_tag_rolls_the_operator_without_losing_a_job(
    release: OperatorRelease, kubectl: Kubectl, kube_client: Any, namespace: str, prefix: str
) -> None:
    release.node.ctr(
        "images", "tag", "--force", f"{OPERATOR_REPOSITORY}:dev", f"{OPERATOR_REPOSITORY}:dev2"
    )
    pools = Pools(kube_client, kubectl, namespace)
    pools.apply(real_pool("workers", FLOW_QUEUES, prefix, concurrency=4))
    ready_pods(kubectl, namespace, "workers", 1)
    flows = Flows(kube_client, kubectl, namespace)
    flows.apply(sleepy_flow("across-upgrade", prefix, children=4, seconds=8))
    wait_for(
        lambda: job_counts(release.redis.url, prefix, "rp-child")["active"] > 0,
        120,
        "children running",
        0.2,
    )
    old = release.operator_pod()
    release.helm("upgrade", RELEASE, str(CHART), *release.install_args("dev2"))
    new = release.wait_operator_ready()
    assert new["metadata"]["uid"] != old["metadata"]["uid"], "a new operator pod"
    assert new["spec"]["containers"][0]["image"] == f"{OPERATOR_REPOSITORY}:dev2"
    flows.apply(sleepy_flow("after-upgrade", prefix, children=2, seconds=0))
    for name, result in (("across-upgrade", 0 + 1 + 2 + 3), ("after-upgrade", 0 + 1)):
        flow = wait_flow(release, flows, name)
        assert flow["status"]["phase"] == "Completed", flow["status"]
        assert flow["status"]["result"] == result
    assert_each_job_ran_once(job_events(release.redis.url, prefix, FLOW_QUEUES), 5 + 3)
