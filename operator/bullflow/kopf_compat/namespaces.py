"""Namespaces that appear while kopf (re)lists them get watched too.

With `--namespace` patterns, kopf 1.45 lists the namespaces once at startup, then follows them
with its generic watcher, which starts with a listing of its own (events of type None) before it
streams changes from that listing's resourceVersion. kopf's namespace handler ignores those
listing events. A matching namespace created between the two listings, or while the watch is
re-established (410 Gone, a dropped connection), arrives only as a listing event: kopf never
watches it until something modifies the namespace, and its Flows and WorkerPools sit there
unhandled. `install` makes the handler revise the namespaces from listing events as well.
"""

from __future__ import annotations

from typing import Any

from kopf._core.reactor import observation

_PATCHED = "_bullflow_sees_listings"


def install() -> None:
    """Idempotent. kopf looks the handler up by module attribute when its namespace observer
    starts, so this must run before `kopf.operator`."""
    original = observation.process_discovered_namespace_event
    if getattr(original, _PATCHED, False):
        return

    async def process_namespace_event(
        *, raw_event: Any, namespaces: Any, insights: Any, **kwargs: Any
    ) -> None:
        if raw_event["type"] is not None:
            await original(raw_event=raw_event, namespaces=namespaces, insights=insights, **kwargs)
            return
        name = raw_event["object"]["metadata"]["name"]
        async with insights.revised:
            known = name in insights.namespaces
            observation.revise_namespaces(
                raw_events=[raw_event], insights=insights, namespaces=namespaces
            )
            if (name in insights.namespaces) != known:
                insights.revised.notify_all()

    setattr(process_namespace_event, _PATCHED, True)
    process_namespace_event.__wrapped__ = original  # type: ignore[attr-defined]
    observation.process_discovered_namespace_event = process_namespace_event
