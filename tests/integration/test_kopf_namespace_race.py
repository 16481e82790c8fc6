"""kopf's real namespace observer against the real API server: a namespace created after kopf's
first listing of namespaces, before its namespace watcher's own listing, is seen only in that
second listing. kopf alone never watches it; with bullflow's kopf_namespaces it does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import auth
from kopf._cogs.structs import credentials, references
from kopf._core.reactor import observation
from kubernetes import client

from bullflow.kopf_compat import namespaces as kopf_namespaces
from tests.harness.cluster import LocalCluster

NAMESPACES = references.Resource(
    group="", version="v1", plural="namespaces", kind="Namespace", namespaced=False,
    verbs=["list", "watch"],
)  # fmt: skip


@pytest.fixture
def late_namespace(kube_client: Any) -> Iterator[tuple[str, Any]]:
    """(name, create): the namespace is created when the test calls create(), deleted after."""
    core: Any = client.CoreV1Api(kube_client)
    name = f"t-late-{uuid.uuid4().hex[:6]}"
    yield name, lambda: core.create_namespace({"metadata": {"name": name}})
    with contextlib.suppress(Exception):
        core.delete_namespace(name)


async def observed_namespaces(
    kubeconfig: str, patterns: list[str], create_between_listings: Any
) -> set[Any]:
    """Runs kopf's namespace observer; creates the namespace just before the observer's watcher
    (which lists again, then watches) starts; returns the namespaces kopf would watch."""
    settings = kopf.OperatorSettings()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", kubeconfig)
        info = kopf.login_with_kubeconfig(settings=settings)
    assert info is not None
    vault = credentials.Vault()
    await vault.populate({"kubeconfig": info})
    auth.vault_var.set(vault)

    insights = references.Insights()
    await insights.backbone.fill(resources=[NAMESPACES])
    real_watcher = observation.queueing.watcher

    async def watcher_after_a_creation(**kwargs: Any) -> None:
        await asyncio.to_thread(create_between_listings)
        await real_watcher(**kwargs)

    # Whether kopf keeps the namespace or not, the watcher hands its listing event to the
    # namespace handler (kopf's own, or patched): once that call has returned, the outcome is
    # final. Waiting for it replaces a sleep "long enough for the listing".
    handler = observation.process_discovered_namespace_event
    handled = asyncio.Event()

    async def recording_handler(*, raw_event: Any, **kwargs: Any) -> None:
        await handler(raw_event=raw_event, **kwargs)
        if raw_event["object"]["metadata"]["name"] in patterns:
            handled.set()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(observation.queueing, "watcher", watcher_after_a_creation)
        mp.setattr(observation, "process_discovered_namespace_event", recording_handler)
        observer = asyncio.create_task(
            observation.namespace_observer(
                clusterwide=False, namespaces=patterns, insights=insights, settings=settings
            )
        )
        try:
            await asyncio.wait_for(insights.ready_namespaces.wait(), 30)
            try:
                await asyncio.wait_for(handled.wait(), 30)
            except TimeoutError:
                raise AssertionError(
                    f"kopf's namespace watcher did not hand {patterns} to its handler in 30s"
                ) from None
        finally:
            observer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await observer
            await vault.close()
    return set(insights.namespaces)


@pytest.mark.parametrize("patched", [False, True], ids=["kopf-alone", "with-kopf_namespaces"])
async def test_a_namespace_created_between_kopfs_two_listings(
    local_cluster: LocalCluster, late_namespace: tuple[str, Any], patched: bool
) -> None:
    name, create = late_namespace
    handler = observation.process_discovered_namespace_event
    kopfs_own = getattr(handler, "__wrapped__", handler)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(observation, "process_discovered_namespace_event", kopfs_own)
        if patched:
            kopf_namespaces.install()
        seen = await observed_namespaces(str(local_cluster.kubeconfig), [name], create)
    assert (name in seen) is patched
