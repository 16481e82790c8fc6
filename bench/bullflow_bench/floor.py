"""The API server's floor for scenario 1: how close to the creates any operator can keep pace on
this machine, whatever its language.

The same burst of creates runs twice without bullflow: once alone, and once with a stand-in
operator that has no logic and no Redis and answers each ADDED watch event with one status
write (the least bullflow must do to show `Submitted`), as many writes in flight as the creator
has creates. Its "all Submitted / creates took" is the floor of the ratio: what remains above it
is the operator's own cost."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kubernetes_asyncio import watch

from bullflow import GROUP, VERSION
from bullflow.services.conditions import now_rfc3339

from .common import create_flows
from .env import FlowWatcher

# About what bullflow writes first for a 1 parent + 2 children flow (same size and shape).
FIRST_STATUS: dict[str, Any] = {
    "phase": "Submitted",
    "progress": "0/3",
    "totalNodes": 3,
    "observedGeneration": 1,
    "counts": {"waiting": 2, "waiting-children": 1},
    "conditions": [
        {
            "type": t,
            "status": s,
            "reason": "Submitted",
            "message": "3 jobs added to Redis in one transaction",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
        for t, s in (("Submitted", "True"), ("Ready", "False"))
    ],
    "nodes": [
        {"path": p, "name": p, "queue": q, "jobId": f"bf-x-{p}", "state": st, "attemptsMade": 0}
        for p, q, st in (
            ("0", "parent", "waiting-children"),
            ("0.0", "child", "waiting"),
            ("0.1", "child", "waiting"),
        )
    ],
}


async def creates_alone(custom: Any, namespace: str, docs: list[dict], conc: int) -> float:
    created = await create_flows(custom, namespace, docs, conc)
    return max(c.done for c in created.values()) - min(c.start for c in created.values())


async def ideal_operator(custom: Any, namespace: str, docs: list[dict], conc: int) -> dict:
    """creates_wall_s, submitted_wall_s and their ratio for the stand-in operator."""
    seen = await FlowWatcher(custom, namespace).start()
    added: asyncio.Queue[str] = asyncio.Queue()

    async def follow() -> None:
        w = watch.Watch()
        async for event in w.stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "flows"
        ):
            if event["type"] == "ADDED":
                added.put_nowait(event["object"]["metadata"]["name"])

    async def write() -> None:
        while True:
            name = await added.get()
            await custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                "flows",
                name,
                [
                    {
                        "op": "add",
                        "path": "/status",
                        "value": {**FIRST_STATUS, "submittedAt": now_rfc3339()},
                    }
                ],
                _content_type="application/json-patch+json",
            )

    tasks = [asyncio.create_task(follow())] + [asyncio.create_task(write()) for _ in range(conc)]
    try:
        await asyncio.sleep(0.5)  # the watch is open
        created = await create_flows(custom, namespace, docs, conc)
        names = list(created)
        await seen.wait(lambda: seen.count_submitted(names) >= len(names), 300, "status writes")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await seen.stop()
    first = min(c.start for c in created.values())
    creates = max(c.done for c in created.values()) - first
    submitted = max(seen.submitted_at[n] for n in names) - first
    return {"creates_wall_s": creates, "submitted_wall_s": submitted, "ratio": submitted / creates}
