"""What BullMQ's event streams say about how often each job was added."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis as redis_sync


@dataclass
class AddedEvents:
    """Per job id: its `added` events and its `duplicated` events (BullMQ's answer to a second
    add of a job id that still exists); and the longest stream read (BullMQ trims them near
    10,000 events, after which counts are partial)."""

    added: Counter[str] = field(default_factory=Counter)
    duplicated: Counter[str] = field(default_factory=Counter)
    longest: int = 0


def added_events(url: str, prefix: str, queues: Iterable[str]) -> AddedEvents:
    r = redis_sync.Redis.from_url(url, decode_responses=True)
    out = AddedEvents()
    try:
        for queue in queues:
            entries = r.xrange(f"{prefix}:{queue}:events")
            out.longest = max(out.longest, len(entries))
            for _, fields in entries:
                if fields.get("event") == "added":
                    out.added[fields["jobId"]] += 1
                elif fields.get("event") == "duplicated":
                    out.duplicated[fields["jobId"]] += 1
    finally:
        r.close()
    return out
