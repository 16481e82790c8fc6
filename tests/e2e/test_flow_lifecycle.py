"""Flow behaviour beyond the happy path: crash safety, catch-up, deletion, TTL, Redis outages,
Events and large flows. Real apiserver, real redis-server, real BullMQ workers."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from kubernetes import client

from tests.e2e.drain import run_sentinels
from tests.e2e.flows import Flows, condition, nodes_by_name
from tests.e2e.operator_proc import OperatorProcess, WorkerSet
from tests.harness.process import wait_for
from tests.harness.redis import RedisServer


def flow_doc(name: str, prefix: str, root: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {"prefix": prefix, "root": root, **spec},
    }


def two_children(queue: str, **child_opts: Any) -> dict[str, Any]:
    return {
        "name": "parent",
        "queueName": queue,
        "data": {"combine": "sum"},
        "children": [
            {"name": "a", "queueName": queue, "data": {"result": 1}, **child_opts},
            {"name": "b", "queueName": queue, "data": {"result": 2}, **child_opts},
        ],
    }


@pytest.fixture
def own_operator(local_cluster, redis_server, private_namespace, tmp_path, flow_crds):
    procs: list[OperatorProcess] = []

    def make(launcher: tuple[str, ...] = ("-m", "bullflow"), **env: str) -> OperatorProcess:
        proc = OperatorProcess(
            local_cluster.kubeconfig,
            redis_server.url,
            tmp_path / "op",
            namespaces=[private_namespace],
            env=env,
            launcher=launcher,
        )
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.stop()


def job_exists(url: str, prefix: str, queue: str, job_id: str) -> bool:
    r = redis_sync.Redis.from_url(url)
    try:
        return bool(r.exists(f"{prefix}:{queue}:{job_id}"))
    finally:
        r.close()


def test_kill_9_right_after_the_redis_write_never_duplicates_jobs(
    own_operator,
    private_namespace,
    kube_client,
    kubectl,
    redis_server,
    redis_prefix,
    workers,
    tmp_path,
):
    crashed = tmp_path / "crashed"
    exec_log = tmp_path / "executions.log"
    operator = own_operator(launcher=("-m", "tests.e2e.crash_after_submit", str(crashed))).start()
    flows = Flows(kube_client, kubectl, private_namespace)
    root = two_children("crash")
    root["children"][0]["opts"] = {"removeOnComplete": True}  # gone from Redis once done
    flows.apply(flow_doc("crash", redis_prefix, root))
    wait_for(operator.exited, 30, "the operator to SIGKILL itself after the Redis write")
    assert crashed.exists()
    assert "submittedAt" not in (flows.get("crash").get("status") or {})
    # Workers finish every job while the operator is down: the removeOnComplete child vanishes.
    workers.start(
        "python",
        ["crash"],
        redis_prefix,
        processor="bullflow_worker.processors:count_executions",
        env={"BULLFLOW_EXEC_LOG": str(exec_log)},
    )
    wait_for(lambda: len(_lines(exec_log)) == 3, 30, "all three jobs to run")
    operator.launcher = ["-m", "bullflow"]
    operator.start()
    flow = flows.wait("crash", timeout=60)
    assert flow["status"]["phase"] == "Completed", flow["status"]
    # Any duplicate submission is queued before the sentinel, so it has run once that has.
    sentinels = run_sentinels(redis_server.url, redis_prefix, ["crash"])
    lines = _lines(exec_log)
    assert sentinels <= set(lines), lines
    executions = [job for job in lines if job not in sentinels]
    uid = flow["metadata"]["uid"]
    assert sorted(executions) == sorted(f"bf-{uid}-{p}" for p in ("0", "0.0", "0.1"))
    assert not job_exists(redis_server.url, redis_prefix, "crash", f"bf-{uid}-0.0")


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_operator_catches_up_after_an_outage_even_with_a_trimmed_event_stream(
    own_operator,
    private_namespace,
    kube_client,
    kubectl,
    redis_server,
    redis_prefix,
    workers,
):
    operator = own_operator().start()
    flows = Flows(kube_client, kubectl, private_namespace)
    flows.apply(flow_doc("catchup", redis_prefix, two_children("catchup")))
    flows.wait("catchup", phases=("Submitted",), timeout=30)
    operator.stop()
    workers.start("python", ["catchup"], redis_prefix)
    r = redis_sync.Redis.from_url(redis_server.url)
    wait_for(lambda: r.zcard(f"{redis_prefix}:catchup:completed") == 3, 30, "jobs to complete")
    r.xtrim(f"{redis_prefix}:catchup:events", maxlen=0)  # as if ~10k later events pushed it out
    r.close()
    operator.start()
    flow = flows.wait("catchup", timeout=30)
    assert flow["status"]["phase"] == "Completed" and flow["status"]["result"] == 3


def test_deletion_policy_delete_removes_the_jobs_and_orphan_keeps_them(
    operator,
    flows,
    kubectl,
    namespace,
    redis_server,
    redis_prefix,
):
    for name, policy in (("deleted", "Delete"), ("orphaned", "Orphan")):
        flows.apply(flow_doc(name, redis_prefix, two_children(f"q-{name}"), deletionPolicy=policy))
    uids = {}
    for name in ("deleted", "orphaned"):
        uids[name] = flows.wait(name, phases=("Submitted",), timeout=30)["metadata"]["uid"]
        assert job_exists(redis_server.url, redis_prefix, f"q-{name}", f"bf-{uids[name]}-0.1")
    # bullflow's finalizer follows the submission, for deletionPolicy Delete only.
    flows.wait_for(
        "deleted", lambda f: bool(f["metadata"].get("finalizers")), "the finalizer", timeout=30
    )
    assert not flows.get("orphaned")["metadata"].get("finalizers")
    kubectl("delete", "flow", "deleted", "orphaned", "-n", namespace, "--timeout=30s")
    for path in ("0", "0.0", "0.1"):
        assert not job_exists(
            redis_server.url, redis_prefix, "q-deleted", f"bf-{uids['deleted']}-{path}"
        )
        assert job_exists(
            redis_server.url, redis_prefix, "q-orphaned", f"bf-{uids['orphaned']}-{path}"
        )


def test_ttl_seconds_after_finished_deletes_the_flow(operator, flows, workers, redis_prefix):
    workers.start("python", ["ttl"], redis_prefix)
    flows.apply(flow_doc("ttl", redis_prefix, two_children("ttl"), ttlSecondsAfterFinished=2))
    assert flows.wait("ttl", timeout=30)["status"]["phase"] == "Completed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            flows.get("ttl")
        except client.ApiException as err:
            assert err.status == 404
            return
        time.sleep(0.3)
    raise AssertionError("the finished flow was not deleted after its TTL")


def test_events_tell_the_story(operator, flows, workers, kube_client, namespace, redis_prefix):
    workers.start("python", ["events"], redis_prefix)
    root = two_children("events")
    root["children"][1]["data"] = {"fail": "disk full"}
    flows.apply(flow_doc("story", redis_prefix, root))
    assert flows.wait("story", timeout=30)["status"]["phase"] == "Failed"
    core = client.CoreV1Api(kube_client)

    def reasons() -> set[str]:
        events = core.list_namespaced_event(namespace).items
        return {e.reason for e in events if e.involved_object.name == "story"}

    wait_for(lambda: {"JobFailed", "ChildFailed"} <= reasons(), 15, "events")
    assert "Submitted" not in reasons()  # the condition says it; no Event per Flow
    messages = [e.message for e in core.list_namespaced_event(namespace).items]
    assert any("disk full" in m for m in messages)


def failed_beside_a_sleeper(
    flows: Flows, workers: WorkerSet, prefix: str, name: str, seconds: float, **spec: Any
) -> dict[str, Any]:
    """A flow whose child b fails at once while its sibling a sleeps `seconds`, applied; its
    manifest is returned as soon as the flow is Failed, a still active."""
    workers.start("python", [name], prefix)
    root = two_children(name)
    root["children"][0]["data"] = {"sleepSeconds": seconds, "result": 1}
    root["children"][1]["data"] = {"fail": "at once 💥"}
    manifest = flow_doc(name, prefix, root, **spec)
    flows.apply(manifest)
    failed = flows.wait(name, ("Failed",), timeout=30)
    assert nodes_by_name(failed)["a"]["state"] == "active", failed["status"]
    assert condition(failed, "Failed")["reason"] == "ChildFailed"
    return manifest


def sibling_completed(flows: Flows, name: str) -> dict[str, Any]:
    """The status once it shows a completed: Failed still, a's value recorded."""
    done = flows.wait_for(
        name,
        lambda f: (
            (f.get("status") or {}).get("nodes") and nodes_by_name(f)["a"]["state"] == "completed"
        ),
        "the sibling completed in the status",
        timeout=30,
    )
    assert done["status"]["phase"] == "Failed" and nodes_by_name(done)["a"]["returnValue"] == 1
    assert done["status"]["counts"] == {"completed": 1, "failed": 1, "waiting-children": 1}
    return done


def test_a_failed_flow_still_follows_its_running_sibling_to_its_end(
    operator, flows, workers, redis_prefix
):
    """A failed child decides the phase at once; its sibling, still running, must still show
    its end in the status (a flow that had ended was no longer followed)."""
    failed_beside_a_sleeper(flows, workers, redis_prefix, "sibling", 3)
    sibling_completed(flows, "sibling")


def test_a_restarted_operator_follows_a_failed_flow_whose_sibling_still_ran(
    own_operator, private_namespace, kube_client, kubectl, redis_server, redis_prefix, workers
):
    operator = own_operator().start()
    flows = Flows(kube_client, kubectl, private_namespace)
    failed_beside_a_sleeper(flows, workers, redis_prefix, "sibling-restart", 4)
    operator.stop()
    r = redis_sync.Redis.from_url(redis_server.url)
    completed = f"{redis_prefix}:sibling-restart:completed"
    wait_for(lambda: r.zcard(completed) == 1, 30, "the sibling to complete")
    r.close()
    operator.start()
    sibling_completed(flows, "sibling-restart")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


def redis_secret(kube_client: Any, namespace: str, url: str) -> dict[str, str]:
    client.CoreV1Api(kube_client).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "redis"},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        },
    )
    return {"name": "redis", "key": "url"}


def test_redis_down_at_submission_is_reported_and_recovers(
    operator,
    flows,
    kube_client,
    namespace,
    own_redis,
    redis_prefix,
    tmp_path,
):
    conn = redis_secret(kube_client, namespace, own_redis.url)
    own_redis.stop()
    flows.apply(flow_doc("outage", redis_prefix, two_children("outage"), connection=conn))
    flow = flows.wait_for(
        "outage",
        lambda f: any(
            c["type"] == "Ready" and c["reason"] == "RedisUnavailable"
            for c in (f.get("status") or {}).get("conditions", [])
        ),
        "a RedisUnavailable condition",
        timeout=30,
    )
    assert "unreachable" in condition(flow, "Ready")["message"]
    own_redis.start()
    own_workers = WorkerSet(own_redis.url, tmp_path)
    own_workers.start("python", ["outage"], redis_prefix)
    try:
        flow = flows.wait("outage", timeout=90)
    finally:
        own_workers.stop()
    assert flow["status"]["phase"] == "Completed" and flow["status"]["result"] == 3


def test_deleting_while_redis_is_down_waits_with_a_condition_then_finishes(
    operator,
    flows,
    kubectl,
    kube_client,
    namespace,
    own_redis,
    redis_prefix,
):
    conn = redis_secret(kube_client, namespace, own_redis.url)
    flows.apply(flow_doc("stuck", redis_prefix, two_children("stuck"), connection=conn))
    uid = flows.wait("stuck", phases=("Submitted",), timeout=30)["metadata"]["uid"]
    flows.wait_for(
        "stuck", lambda f: bool(f["metadata"].get("finalizers")), "the finalizer", timeout=30
    )
    own_redis.stop()
    kubectl("delete", "flow", "stuck", "-n", namespace, "--wait=false")
    flows.wait_for(
        "stuck",
        lambda f: any(
            c["reason"] == "DeletionBlocked" for c in (f.get("status") or {}).get("conditions", [])
        ),
        "a DeletionBlocked condition",
        timeout=30,
    )
    own_redis.start()  # empty again (no persistence), so nothing is left to remove
    kubectl("wait", "--for=delete", "flow/stuck", "-n", namespace, "--timeout=90s")
    assert not job_exists(own_redis.url, redis_prefix, "stuck", f"bf-{uid}-0")


def test_a_large_flow_keeps_its_status_small(operator, flows, workers, redis_prefix):
    children = [{"name": f"c{i}", "queueName": "large", "data": {"result": 1}} for i in range(2000)]
    root = {"name": "sum", "queueName": "large", "data": {"combine": "sum"}, "children": children}
    workers.start("python", ["large"], redis_prefix, concurrency=100)
    flows.apply(flow_doc("large", redis_prefix, root))
    flow = flows.wait("large", timeout=120)
    status = flow["status"]
    assert status["phase"] == "Completed" and status["result"] == 2000
    assert status["totalNodes"] == 2001 and status["progress"] == "2001/2001"
    assert status["nodesTruncated"] is True and status["counts"] == {"completed": 2001}
    assert len(repr(status)) < 256 * 1024
    # kopf's state is in the operator's memory: no copy of the (large) spec in annotations.
    annotations = flow["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith("bullflow.io")], annotations
    flows.wait_for(
        "large",
        lambda f: f["metadata"].get("finalizers") == ["bullflow.io/finalizer"],
        "bullflow's finalizer, alone",
        timeout=30,
    )


def test_a_flow_without_workers_says_so_until_a_worker_comes(
    operator, flows, workers, redis_prefix
):
    flows.apply(flow_doc("idle", redis_prefix, two_children("nobody-listens")))
    flow = flows.wait_for(
        "idle",
        lambda f: any(
            c["type"] == "WorkersAvailable" and c["status"] == "False"
            for c in (f.get("status") or {}).get("conditions", [])
        ),
        "a WorkersAvailable=False condition",
        timeout=30,
    )
    available = condition(flow, "WorkersAvailable")
    assert available["reason"] == "NoWorkers" and "nobody-listens" in available["message"]
    workers.start("node", ["nobody-listens"], redis_prefix)  # Node workers are seen too
    flow = flows.wait("idle", timeout=30)
    assert flow["status"]["phase"] == "Completed"
    assert all(c["type"] != "WorkersAvailable" for c in flow["status"]["conditions"])


def test_kubectl_wait_and_get_show_the_truth(
    operator, flows, workers, kubectl, namespace, redis_prefix
):
    workers.start("python", ["kw"], redis_prefix)
    flows.apply(flow_doc("waitme", redis_prefix, two_children("kw")))
    kubectl("wait", "--for=condition=Completed", "flow/waitme", "-n", namespace, "--timeout=60s")
    table = kubectl("get", "flows", "-n", namespace).stdout.split("\n")
    assert table[0].split()[:4] == ["NAME", "PHASE", "PROGRESS", "REASON"]
    assert table[1].split()[:4] == ["waitme", "Completed", "3/3", "Completed"]
    assert "waitme" in kubectl("get", "bullflow", "-n", namespace).stdout  # category


def test_redis_outage_while_following_a_flow_is_reported_and_recovers(
    operator,
    flows,
    kube_client,
    namespace,
    own_redis,
    redis_prefix,
    tmp_path,
):
    conn = redis_secret(kube_client, namespace, own_redis.url)
    flows.apply(flow_doc("paused", redis_prefix, two_children("paused"), connection=conn))
    flows.wait("paused", phases=("Submitted",), timeout=30)
    with own_redis.paused():  # connections hang: the operator's timeouts must fire
        flow = flows.wait_for(
            "paused",
            lambda f: condition(f, "Ready")["reason"] == "RedisUnavailable",
            "a RedisUnavailable condition",
            timeout=60,
        )
    own_workers = WorkerSet(own_redis.url, tmp_path)
    own_workers.start("python", ["paused"], redis_prefix)
    try:
        flow = flows.wait("paused", timeout=60)
    finally:
        own_workers.stop()
    assert flow["status"]["phase"] == "Completed"
    assert condition(flow, "Ready")["reason"] == "Completed"


def test_idempotency_key_makes_a_recreated_flow_the_same_run(
    operator, flows, workers, kubectl, namespace, redis_server, redis_prefix, tmp_path
):
    exec_log = tmp_path / "executions.log"
    workers.start(
        "python",
        ["idem"],
        redis_prefix,
        processor="bullflow_worker.processors:count_executions",
        env={"BULLFLOW_EXEC_LOG": str(exec_log)},
    )
    manifest = flow_doc(
        "nightly",
        redis_prefix,
        two_children("idem"),
        idempotencyKey="nightly-2026-11-28",
        ttlSecondsAfterFinished=1,
    )
    first = flows.apply(manifest)
    wait_for(lambda: len(_lines(exec_log)) == 3, 30, "the three jobs to run")
    kubectl("wait", "--for=delete", "flow/nightly", "-n", namespace, "--timeout=60s")  # TTL
    # Applied again, as Argo CD would after a prune (without the TTL, which would delete the
    # restored Flow again at once: it finished long ago).
    del manifest["spec"]["ttlSecondsAfterFinished"]
    second = flows.apply(manifest)
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    flow = flows.wait_for(
        "nightly",
        lambda f: any(
            c["type"] == "Restored" for c in (f.get("status") or {}).get("conditions", [])
        ),
        "a Restored condition",
        timeout=30,
    )
    assert flow["status"]["phase"] == "Completed"
    assert condition(flow, "Restored")["reason"] == "IdempotencyKey"
    assert first["metadata"]["uid"] in condition(flow, "Restored")["message"]
    # A resubmission by the second Flow would be queued before the sentinel: it has run by now.
    sentinels = run_sentinels(redis_server.url, redis_prefix, ["idem"])
    lines = _lines(exec_log)
    assert sentinels <= set(lines), lines
    assert len([job for job in lines if job not in sentinels]) == 3, lines  # nothing ran twice

    twin = flow_doc(
        "nightly-twin", redis_prefix, two_children("idem"), idempotencyKey="nightly-2026-11-28"
    )
    flows.apply(twin)
    flow = flows.wait("nightly-twin", timeout=30)
    failed = condition(flow, "Failed")
    assert failed["reason"] == "DuplicateIdempotencyKey" and "nightly" in failed["message"]


def test_a_recreated_flow_follows_the_sibling_its_deleted_twin_left_running(
    operator, flows, workers, kubectl, namespace, redis_prefix
):
    """The first Flow failed (a child failed) and was deleted by its TTL while the sibling still
    ran; the Flow applied again with the same idempotencyKey adopts the run and must show the
    sibling's end, not the status recorded when the first Flow ended."""
    manifest = failed_beside_a_sleeper(
        flows,
        workers,
        redis_prefix,
        "twice",
        8,
        idempotencyKey="twice-2026-12-03",
        ttlSecondsAfterFinished=1,
    )
    kubectl("wait", "--for=delete", "flow/twice", "-n", namespace, "--timeout=60s")  # TTL
    del manifest["spec"]["ttlSecondsAfterFinished"]  # applied again, as Argo CD would
    flows.apply(manifest)
    done = sibling_completed(flows, "twice")
    assert condition(done, "Restored")["reason"] == "IdempotencyKey"


def test_node_workers_count_as_workers(operator, flows, workers, redis_server, redis_prefix):
    workers.start("node", ["nw-delayed"], redis_prefix)
    node_name = f"{redis_prefix}:{base64.b64encode(b'nw-delayed').decode()}"
    r = redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    wait_for(
        lambda: any(c["name"].startswith(node_name) for c in r.client_list()),
        30,
        "the Node worker to connect",
    )
    r.close()
    root = {
        "name": "parent",
        "queueName": "nw-parent",
        "children": [{"name": "later", "queueName": "nw-delayed", "opts": {"delay": 600_000}}],
    }
    flows.apply(flow_doc("nodeseen", redis_prefix, root))
    flow = flows.wait_for(
        "nodeseen",
        lambda f: any(
            c["type"] == "WorkersAvailable" for c in (f.get("status") or {}).get("conditions", [])
        ),
        "a WorkersAvailable condition",
        timeout=30,
    )
    assert condition(flow, "WorkersAvailable")["status"] == "True", flow["status"]
    assert {n["name"]: n["state"] for n in flow["status"]["nodes"]} == {
        "parent": "waiting-children",
        "later": "delayed",
    }
