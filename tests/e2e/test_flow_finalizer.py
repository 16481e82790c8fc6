"""bullflow's own finalizer, added after the submission (not before it, as kopf would): the
FlowController against the real API server and redis-server, without kopf, so that the window
"submitted, no finalizer yet" can be held open on purpose."""

from __future__ import annotations

import asyncio
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
    for _ in range(100):
        if get_flow(kube_client, ns, "del")["metadata"].get("finalizers"):
            break
        await asyncio.sleep(0.05)
    assert get_flow(kube_client, ns, "del")["metadata"]["finalizers"] == [FINALIZER]
    assert not get_flow(kube_client, ns, "orph")["metadata"].get("finalizers")
    # A second reconcile (e.g. after a restart) does not add it twice.
    await controller.reconcile(get_flow(kube_client, ns, "del"))
    await asyncio.sleep(0.3)
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
    await asyncio.sleep(0.3)
    assert controller.bookkeeper.backlog() == 0


async def test_an_orphan_flow_keeps_its_jobs_when_gone(
    controller, kube_client, private_namespace, redis_server, redis_prefix
):
    body = create_flow(
        kube_client, private_namespace, redis_prefix, "keep", deletionPolicy="Orphan"
    )
    await controller.reconcile(body)
    await controller.gone(body)
    assert jobs_in_redis(redis_server.url, redis_prefix, body["metadata"]["uid"]) == 3
