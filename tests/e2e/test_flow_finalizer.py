"""bullflow's own finalizer, added after the submission (not before it, as kopf would): the
FlowController against the real API server and redis-server, without kopf, so that the window
"submitted, no finalizer yet" can be held open on purpose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis as redis_sync
from kubernetes import client
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

from bullflow import GROUP, VERSION
from bullflow.config import Settings
from bullflow.controllers.connections import RedisPool
from bullflow.controllers.flow import FINALIZER, FlowController
from bullflow.storage.kube import KubeApi


@pytest.fixture
async def controller(
    local_cluster: Any, redis_server: Any, flow_crds: None
) -> AsyncIterator[FlowController]:
    conf = kclient.Configuration()
    await kconfig.load_kube_config(str(local_cluster.kubeconfig), client_configuration=conf)
    kube = KubeApi(kclient.ApiClient(conf))
    pool = RedisPool(kube, redis_server.url, 5.0)
    flows = FlowController(Settings(redis_url=redis_server.url), kube, pool)
    yield flows
    await flows.close()
    await pool.close()
    await kube.close()


def create_flow(kube_client: Any, namespace: str, prefix: str, name: str, **spec: Any) -> dict:
    children = [{"name": c, "queueName": "fin", "data": {}} for c in ("a", "b")]
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {"prefix": prefix, "root": {"name": "p", "queueName": "fin", "children": children}},
    }
    doc["spec"].update(spec)
    custom = client.CustomObjectsApi(kube_client)
    body: dict = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "flows", doc)
    return body


def get_flow(kube_client: Any, namespace: str, name: str) -> dict:
    custom = client.CustomObjectsApi(kube_client)
    body: dict = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "flows", name)
    return body


async def worked_off(controller: FlowController, timeout: float = 30) -> None:
    """Every finalizer write queued so far has been attempted (made, or failed with a retry
    pending), instead of sleeping until it probably has."""
    bookkeeper = controller.bookkeeper
    try:
        await asyncio.wait_for(bookkeeper._queue.join(), timeout)
    except TimeoutError:
        raise AssertionError(
            f"{bookkeeper.backlog()} finalizer writes still queued after {timeout}s"
        ) from None


async def finalizers_settled(controller: FlowController, timeout: float = 60) -> None:
    """Every finalizer queued so far has been added (or its Flow is gone), retries included."""
    deadline = time.monotonic() + timeout
    while True:
        await worked_off(controller, max(deadline - time.monotonic(), 0.1))
        if not controller.bookkeeper._pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"finalizers of {controller.bookkeeper._pending} not added after {timeout}s"
            )
        await asyncio.sleep(0.05)


def jobs_in_redis(url: str, prefix: str, uid: str) -> int:
    r = redis_sync.Redis.from_url(url)
    try:
        return sum(bool(r.exists(f"{prefix}:fin:bf-{uid}-{p}")) for p in ("0", "0.0", "0.1"))
    finally:
        r.close()


async def test_the_finalizer_follows_the_submission_and_only_for_delete_policy(
    controller, kube_client, private_namespace, redis_server, redis_prefix
):
    ns = private_namespace
    deleted = create_flow(kube_client, ns, redis_prefix, "del")
    orphaned = create_flow(kube_client, ns, redis_prefix, "orph", deletionPolicy="Orphan")
    await controller.reconcile(deleted)
    await controller.reconcile(orphaned)
    # Submitted first; the finalizer waits for the bookkeeper (not started yet).
    assert jobs_in_redis(redis_server.url, redis_prefix, deleted["metadata"]["uid"]) == 3
    assert not get_flow(kube_client, ns, "del")["metadata"].get("finalizers")
    assert controller.bookkeeper.backlog() == 1  # the Delete one only
    controller.bookkeeper.start()
    await finalizers_settled(controller)
    assert get_flow(kube_client, ns, "del")["metadata"]["finalizers"] == [FINALIZER]
    assert not get_flow(kube_client, ns, "orph")["metadata"].get("finalizers")
    # A second reconcile (e.g. after a restart) does not add it twice.
    await controller.reconcile(get_flow(kube_client, ns, "del"))
    await finalizers_settled(controller)
    assert get_flow(kube_client, ns, "del")["metadata"]["finalizers"] == [FINALIZER]


async def test_a_flow_deleted_before_its_finalizer_still_has_its_jobs_removed(
    controller, kube_client, private_namespace, redis_server, redis_prefix
):
    ns = private_namespace
    body = create_flow(kube_client, ns, redis_prefix, "quick")
    uid = body["metadata"]["uid"]
    await controller.reconcile(body)
    assert jobs_in_redis(redis_server.url, redis_prefix, uid) == 3
    client.CustomObjectsApi(kube_client).delete_namespaced_custom_object(
        GROUP, VERSION, ns, "flows", "quick"
    )  # no finalizer yet: gone at once, and kopf would hand us the DELETED event
    await controller.gone(body)
    assert jobs_in_redis(redis_server.url, redis_prefix, uid) == 0
    controller.bookkeeper.start()  # its queued finalizer finds the Flow gone: no error, no retry
    await worked_off(controller)
    assert controller.bookkeeper.backlog() == 0
    assert not controller.bookkeeper._pending, "a retry is scheduled"


async def test_an_orphan_flow_keeps_its_jobs_when_gone(
    controller, kube_client, private_namespace, redis_server, redis_prefix
):
    body = create_flow(
        kube_client, private_namespace, redis_prefix, "keep", deletionPolicy="Orphan"
    )
    await controller.reconcile(body)
    await controller.gone(body)
    assert jobs_in_redis(redis_server.url, redis_prefix, body["metadata"]["uid"]) == 3
