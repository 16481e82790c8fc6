"""Every client BullRedis builds packs its commands with hiredis, whatever the topology (see
storage/redis_packing.py): the Sentinel master's pool, the Cluster's nodes (also those a slot
table refresh creates later) and the plain per-master clients of storage/redis_nodes.py."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection
from redis.utils import HIREDIS_AVAILABLE

from bullflow.storage.redis_jobs import BullRedis
from bullflow.storage.redis_nodes import node_client
from bullflow.storage.redis_packing import _HiredisPacking

pytestmark = pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis is a dependency")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis+sentinel://127.0.0.1:9/mymaster", SentinelManagedConnection),
        ("rediss+sentinel://127.0.0.1:9/mymaster", SentinelManagedSSLConnection),
    ],
)
async def test_the_sentinel_master_pool_packs_with_hiredis(url: str, kind: type):
    conn = BullRedis(url)
    try:
        assert conn.topology == "sentinel"
        pool_class = conn.client.connection_pool.connection_class
        assert issubclass(pool_class, kind) and issubclass(pool_class, _HiredisPacking)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("url", "kind"),
    [("redis+cluster://127.0.0.1:9", Connection), ("rediss+cluster://127.0.0.1:9", SSLConnection)],
)
async def test_cluster_nodes_and_per_master_clients_pack_with_hiredis(url: str, kind: type):
    conn = BullRedis(url)
    try:
        assert isinstance(conn.client, RedisCluster) and conn.topology == "cluster"
        manager = conn.client.nodes_manager
        later = manager.connection_kwargs["connection_class"]  # nodes made by a refresh
        assert issubclass(later, kind) and issubclass(later, _HiredisPacking)
        for seed in manager.startup_nodes.values():
            assert issubclass(seed.connection_class, _HiredisPacking)
        node = ClusterNode("127.0.0.1", 9, **manager.connection_kwargs)
        plain = node_client(node)
        pool = plain.connection_pool
        assert issubclass(pool.connection_class, kind)
        assert issubclass(pool.connection_class, _HiredisPacking)
        assert pool.connection_kwargs["port"] == 9 and pool.connection_kwargs["decode_responses"]
        await plain.aclose()
    finally:
        await conn.close()
