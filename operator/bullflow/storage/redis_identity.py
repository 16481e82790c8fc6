"""Which Redis holds a prefix's data, and what a change of it means. Pure: no I/O.

The tracker asks every second (RESTART_CHECK_SECONDS in controllers/tracker.py) because a Redis
that restarted without its data, or with an older snapshot, says nothing: the client reconnects
and carries on, and jobs and their events are gone. Its run id (INFO server) is new after every
start of the process, so a new run id makes the tracker re-read every flow of the connection
(a flow whose jobs are missing then ends as JobsLost, decided from what the read finds).

A failover also brings a new run id: Sentinel or the Cluster promoted a replica. Its replication
history tells it apart: a promoted replica keeps the old master's replication id as its
`master_replid2` (PSYNC2), and a replica has its master's `master_replid`. That is the same data
(up to what asynchronous replication had not sent yet), not a restart: the flows are re-read all
the same, since those last writes may be missing, but it is not reported as a restart.

On a Cluster the server that matters is the master of the prefix's hash slot (its keys all live
there); another node's run id says nothing about them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# Redis's replication id when there was no previous one.
NO_REPLID = "0" * 40


@dataclass(frozen=True)
class ServerIdentity:
    address: str  # host:port of the server answering for the data
    run_id: str
    replid: str  # master_replid
    replid2: str  # master_replid2: the replication id it had before its last promotion

    @classmethod
    def from_info(cls, address: str, info: dict[str, Any]) -> ServerIdentity:
        """From INFO's `server` and `replication` sections (one dict or both merged)."""
        return cls(
            address=address,
            run_id=str(info.get("run_id", "")),
            replid=_replid(info.get("master_replid")),
            replid2=_replid(info.get("master_replid2")),
        )


def _replid(value: Any) -> str:
    """redis-py parses INFO's values: the all-zero id (none) arrives as the number 0."""
    text = "" if value is None else str(value)
    return NO_REPLID if text and not text.strip("0") else text


class Change(enum.Enum):
    # The values are what the tracker's log line says.
    SAME = "the same server"  # the very process seen last time
    # A replica of the same data took over: the same data, maybe minus the last writes.
    FAILOVER = "a replica took over"
    # The prefix's slot is served by another master (a Cluster reshard moved it).
    MOVED = "the prefix's slot moved to another master"
    RESTARTED = "restarted"  # a new process with data of unknown age: anything may be lost

    @property
    def reread(self) -> bool:
        """Should every flow of the connection be read again from Redis?"""
        return self is not Change.SAME


def _same_lineage(before: ServerIdentity, after: ServerIdentity) -> bool:
    ids_before = {before.replid} - {"", NO_REPLID}
    ids_after = {after.replid, after.replid2} - {"", NO_REPLID}
    return bool(ids_before & ids_after)


def classify_change(before: ServerIdentity, after: ServerIdentity) -> Change:
    """What happened between two looks at the server holding a prefix's data."""
    if after.run_id == before.run_id:
        return Change.SAME
    if _same_lineage(before, after):
        return Change.FAILOVER
    if after.address != before.address:
        return Change.MOVED
    return Change.RESTARTED
