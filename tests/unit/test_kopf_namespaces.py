"""Namespaces matching --namespace patterns that kopf's namespace watcher reports in its listing
(a namespace created while kopf lists or re-lists) get watched, and the orchestrator is woken."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kopf._cogs.structs import references
from kopf._core.reactor import observation

from bullflow.kopf_compat import namespaces as kopf_namespaces

pytestmark = pytest.mark.unit

PATTERNS = ["t-*", "exact"]


def event(kind: str | None, name: str, **metadata: Any) -> Any:
    return {"type": kind, "object": {"metadata": {"name": name, **metadata}}}


def kopfs_own_handler() -> Any:
    handler = observation.process_discovered_namespace_event
    return getattr(handler, "__wrapped__", handler)


class CountingCondition(asyncio.Condition):
    """insights.revised that counts its notifications: "woken for nothing" without a timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify(self, n: int = 1) -> None:  # notify_all() calls notify(len(waiters))
        self.notified += 1
        super().notify(n)


async def revised(insights: references.Insights) -> asyncio.Task[None]:
    """A task waiting on insights.revised like kopf's orchestrator: it ends when woken."""

    async def wait() -> None:
        async with insights.revised:
            await insights.revised.wait()

    waiter = asyncio.create_task(wait())
    await asyncio.sleep(0)  # the waiter now waits
    return waiter


async def test_kopf_alone_drops_namespaces_seen_only_in_its_watchers_listing() -> None:
    """The kopf behaviour the patch exists for; when kopf fixes it, drop kopf_namespaces."""
    insights = references.Insights()
    kopf_handler = kopfs_own_handler()
    await kopf_handler(raw_event=event(None, "t-new"), namespaces=PATTERNS, insights=insights)
    assert insights.namespaces == set()


async def test_a_listed_namespace_matching_the_patterns_is_watched() -> None:
    kopf_namespaces.install()
    kopf_namespaces.install()  # idempotent: wraps kopf's handler once
    handler = observation.process_discovered_namespace_event
    assert kopfs_own_handler() is not handler and not hasattr(kopfs_own_handler(), "__wrapped__")
    condition = CountingCondition()
    insights = references.Insights(revised=condition)

    waiter = await revised(insights)
    await handler(raw_event=event(None, "t-new"), namespaces=PATTERNS, insights=insights)
    assert insights.namespaces == {"t-new"}
    assert condition.notified == 1
    await asyncio.wait_for(waiter, 30)

    waiter = await revised(insights)
    for name in ("t-new", "other"):  # known already / not matching: nothing to revise
        await handler(raw_event=event(None, name), namespaces=PATTERNS, insights=insights)
    assert insights.namespaces == {"t-new"}
    assert condition.notified == 1, "woke the orchestrator for nothing"
    assert not waiter.done()
    waiter.cancel()


async def test_listing_a_terminating_namespace_forgets_it_and_events_still_work() -> None:
    kopf_namespaces.install()
    handler = observation.process_discovered_namespace_event
    insights = references.Insights()
    await handler(raw_event=event("ADDED", "exact"), namespaces=PATTERNS, insights=insights)
    await handler(raw_event=event("ADDED", "t-a"), namespaces=PATTERNS, insights=insights)
    assert insights.namespaces == {"exact", "t-a"}
    terminating = {"deletionTimestamp": "2026-11-29T00:00:00Z"}
    listed = event(None, "t-a", **terminating)
    listed["object"]["status"] = {"conditions": [{"type": "Done", "status": "False"}]}
    await handler(raw_event=listed, namespaces=PATTERNS, insights=insights)
    assert insights.namespaces == {"exact"}
    await handler(raw_event=event("DELETED", "exact"), namespaces=PATTERNS, insights=insights)
    assert insights.namespaces == set()
