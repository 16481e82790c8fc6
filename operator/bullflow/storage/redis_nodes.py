"""Redis Cluster: what the operator runs on the master that owns a prefix's hash slot.

redis-py's asyncio `ClusterPipeline` refuses EVALSHA (it is among its blocked pipeline
commands), and BullMQ's submissions, state reads, retries and stops are EVALSHAs queued on a
pipeline, most of them in one MULTI/EXEC with our own commands (the submission marker, WATCHed
reads). On a Cluster every key of a flow shares the slot of the prefix's hash tag (`{bull}`),
so all of it can run on one node: a plain `redis.asyncio.Redis` to the slot's master, built with
the Cluster's own connection class and settings (credentials, TLS, timeouts), gives the full
Pipeline: MULTI/EXEC, WATCH, script loading on NOSCRIPT.

What such a client does not do is follow the slot: after a failover or a reshard the node
answers MOVED (or stops answering). `SlotRouter.run` then refreshes the Cluster's slot table and
runs the operation again, on the new owner, a few times before giving up with the error (the
caller reports Redis unavailable and comes back later). Each operation is written to be run
again from its start: a submission checks its marker first, a WATCHed transaction reads again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .redis_packing import with_hiredis_packing

T = TypeVar("T")

# The slot moved (MOVED, ASK: a reshard; READONLY: the node was demoted), the cluster is
# electing a new master (CLUSTERDOWN, TRYAGAIN), or the node is gone (a killed master): after a
# refresh of the slot table the operation may succeed on another node.
SLOT_ERRORS = (
    AskError,  # MovedError is one
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    SlotNotCoveredError,
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
)
# ConnectionErrors that no other node answers differently: a wrong password or user.
NOT_SLOT_ERRORS = (AuthenticationError, AuthorizationError)
# A Cluster promotes a replica after its node timeout (seconds): the retries span a few.
SLOT_ATTEMPTS = 6
SLOT_RETRY_BASE_SECONDS = 0.1
SLOT_RETRY_MAX_SECONDS = 1.0


def slot_retry_delay(attempt: int) -> float:
    """The pause before attempt `attempt + 1` (attempt counts from 0)."""
    return min(SLOT_RETRY_BASE_SECONDS * 2**attempt, SLOT_RETRY_MAX_SECONDS)


def node_client(node: ClusterNode) -> aioredis.Redis:
    """A plain client to one Cluster node, with the node's own connection settings, packing
    its commands with hiredis (see redis_packing)."""
    pool = aioredis.ConnectionPool(
        connection_class=with_hiredis_packing(node.connection_class),
        max_connections=node.max_connections,
        **node.connection_kwargs,
    )
    return aioredis.Redis(connection_pool=pool)


class SlotRouter:
    """One plain client per master node of a Cluster, handed out by the slot of a key."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self._clients: dict[str, aioredis.Redis] = {}  # node name (host:port) -> client

    async def master(self, key: str) -> ClusterNode:
        """The master node that owns `key`'s slot, as the Cluster's slot table says."""
        await self.cluster.initialize()  # connects and reads the slot table on first use only
        node = self.cluster.get_node_from_key(key)
        if node is None:
            raise SlotNotCoveredError(f"no node serves the slot of {key!r}")
        return node

    async def masters(self) -> list[ClusterNode]:
        await self.cluster.initialize()
        return self.cluster.get_primaries()

    def client_of(self, node: ClusterNode) -> aioredis.Redis:
        if node.name not in self._clients:
            self._clients[node.name] = node_client(node)
        return self._clients[node.name]

    async def client(self, key: str) -> aioredis.Redis:
        return self.client_of(await self.master(key))

    async def refresh(self) -> None:
        """Read the slot table again (after MOVED, or a node that stopped answering)."""
        await self.cluster.nodes_manager.initialize()

    async def run(self, key: str, operation: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """`operation` on the client of the master that owns `key`'s slot, run again on the new
        owner when the slot moved or its master failed (see the module's docstring)."""
        for attempt in range(SLOT_ATTEMPTS):
            client = await self.client(key)
            try:
                return await operation(client)
            except NOT_SLOT_ERRORS:
                raise
            except SLOT_ERRORS:
                if attempt == SLOT_ATTEMPTS - 1:
                    raise
            await asyncio.sleep(slot_retry_delay(attempt))
            with contextlib.suppress(Exception):  # no node answers yet: the next attempt tells
                await self.refresh()
        raise AssertionError("unreachable")  # the loop returns or raises

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


__all__ = ["SLOT_ERRORS", "SlotRouter", "node_client", "slot_retry_delay"]
