"""The client factory against real servers: a standalone redis-server, a Sentinel setup (1 master,
1 replica, 3 sentinels, passwords on both) and a Redis Cluster (3 masters + 3 replicas), each
reached from its topology URL alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import AuthenticationError

from bullflow_worker.redis_address import parse_redis_address
from bullflow_worker.redis_clients import MasterFailingOver, async_client, sync_client
from tests.harness.process import wait_for
from tests.harness.redis import RedisServer
from tests.harness.redis_topologies import RedisClusterTopology, RedisSentinelTopology

DATA_PASSWORD = "data-pw/with@odd:chars"
SENTINEL_PASSWORD = "sentinel-pw"
TIMEOUTS = {"socket_timeout": 3.0, "socket_connect_timeout": 3.0}


@pytest.fixture
def odd_password_sentinel(tmp_path: Path) -> Iterator[RedisSentinelTopology]:
    """Its own (the failover test changes the master), with a password that needs encoding."""
    topology = RedisSentinelTopology(
        tmp_path / "sentinel", password=DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD
    )
    with topology:
        yield topology


async def test_standalone_with_password_and_db(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password=DATA_PASSWORD) as server:
        url = server.url.replace("/0", "/3")
        client = async_client(parse_redis_address(url), decode_responses=True, **TIMEOUTS)
        try:
            assert isinstance(client, redis.asyncio.Redis)
            await client.set("standalone-key", "v")
            assert await client.get("standalone-key") == "v"
            assert client.connection_pool.connection_kwargs["db"] == 3
            assert client.connection_pool.connection_kwargs["socket_timeout"] == 3.0
        finally:
            await client.aclose()
        blocking = sync_client(parse_redis_address(url), decode_responses=True)
        try:
            assert blocking.get("standalone-key") == "v"
        finally:
            blocking.close()


def role(port: int) -> str:
    direct = redis.Redis(port=port, password=DATA_PASSWORD, decode_responses=True)
    try:
        return str(direct.execute_command("ROLE")[0])
    finally:
        direct.close()


async def test_sentinel_master_follows_a_failover(
    odd_password_sentinel: RedisSentinelTopology,
) -> None:
    sentinel_setup = odd_password_sentinel
    address = parse_redis_address(sentinel_setup.url_for(db=2))
    assert (address.password, address.sentinel_password) == (DATA_PASSWORD, SENTINEL_PASSWORD)
    client = async_client(address, decode_responses=True, **TIMEOUTS)
    try:
        await client.set("sentinel-key", "before")
        first_master = sentinel_setup.master()
        assert (await client.execute_command("ROLE"))[0] == "master"
        assert client.connection_pool.connection_kwargs["db"] == 2
        old, new = sentinel_setup.failover()
        assert first_master.port == old.port != new.port
        # Until the sentinels turn the old master into a replica it still takes writes (the
        # Sentinel failover window BullMQ lives with); once it is one, its READONLY reply makes
        # the pool drop the connection and ask the sentinels again.
        wait_for(lambda: role(old.port) == "slave", 60, "the old master to become a replica")
        await client.set("sentinel-key", "after")
        direct = redis.Redis(port=new.port, password=DATA_PASSWORD, db=2, decode_responses=True)
        try:
            assert direct.get("sentinel-key") == "after"
            assert direct.execute_command("ROLE")[0] == "master"
        finally:
            direct.close()
    finally:
        await client.aclose()


async def test_a_master_killed_reads_failing_over_until_the_promotion(
    fresh_redis_sentinel: RedisSentinelTopology,
) -> None:
    """Between the sentinels marking the killed master down and their promotion of the replica,
    the master is not found: MasterFailingOver (the operator waits for it a second at a time),
    never a bare MasterNotFoundError (the operator's sign of a wrong master name)."""
    sentinel_setup = fresh_redis_sentinel
    client = async_client(parse_redis_address(sentinel_setup.url), **TIMEOUTS)
    pool = client.connection_pool
    try:
        old = sentinel_setup.kill_master()
        failing_over = 0
        new_port = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while new_port is None and loop.time() < deadline:
            try:
                _host, port = await pool.get_master_address()
                if port != old.port:
                    new_port = port
            except MasterFailingOver:
                failing_over += 1
            await asyncio.sleep(0.05)
        assert new_port is not None, "the sentinels promoted no replica within 60 s"
        assert failing_over > 0, "the master was never reported as failing over"
        await client.set("after-failover", "1")  # and the client follows the promotion
    finally:
        await client.aclose()


def test_sentinel_sync_client(redis_sentinel: RedisSentinelTopology) -> None:
    client = sync_client(parse_redis_address(redis_sentinel.url), decode_responses=True)
    try:
        client.set("sync-sentinel-key", "1")
        assert client.get("sync-sentinel-key") == "1"
    finally:
        client.close()


async def test_sentinel_unknown_master_and_wrong_passwords(
    redis_sentinel: RedisSentinelTopology,
) -> None:
    sentinel_setup = redis_sentinel
    unknown = async_client(
        parse_redis_address(sentinel_setup.url_for(master_name="nosuchmaster")), **TIMEOUTS
    )
    with pytest.raises(MasterNotFoundError) as unknown_name:
        await unknown.ping()
    assert not isinstance(unknown_name.value, MasterFailingOver)  # a mistake, not a wait
    await unknown.aclose()
    wrong = async_client(
        parse_redis_address(sentinel_setup.url_for(password="not-the-password")), **TIMEOUTS
    )
    with pytest.raises(AuthenticationError):
        await wrong.ping()
    await wrong.aclose()
    # Without the sentinels' own password no sentinel answers: no master can be found.
    no_sentinel_auth = sentinel_setup.url.partition("?")[0]
    blind = async_client(parse_redis_address(no_sentinel_auth), **TIMEOUTS)
    with pytest.raises(MasterNotFoundError):
        await blind.ping()
    await blind.aclose()


async def test_cluster_spreads_keys_over_masters(redis_cluster: RedisClusterTopology) -> None:
    address = parse_redis_address(redis_cluster.url)
    client = async_client(address, decode_responses=True, **TIMEOUTS)
    try:
        assert isinstance(client, redis.asyncio.cluster.RedisCluster)
        keys = [f"cluster-key-{i}" for i in range(30)]
        for key in keys:
            await client.set(key, key.upper())
        assert [await client.get(k) for k in keys] == [k.upper() for k in keys]
        owners = {redis_cluster.master_for(k).port for k in keys}
        assert len(owners) == 3  # the client found every master from the seeds
        # A hash-tagged prefix keeps a flow's keys on one slot: a multi-key command works.
        await client.mset({"{clients-test}:a": "1", "{clients-test}:b": "2"})
        assert await client.mget("{clients-test}:a", "{clients-test}:b") == ["1", "2"]
    finally:
        await client.aclose()
    blocking = sync_client(address, decode_responses=True)
    try:
        assert blocking.get("cluster-key-7") == "CLUSTER-KEY-7"
    finally:
        for key in [*keys, "{clients-test}:a", "{clients-test}:b"]:  # a shared cluster
            blocking.delete(key)
        blocking.close()


async def test_cluster_wrong_password(redis_cluster: RedisClusterTopology) -> None:
    url = redis_cluster.url_with_password("not-the-password")
    client = async_client(parse_redis_address(url), **TIMEOUTS)
    with pytest.raises((AuthenticationError, redis.exceptions.RedisClusterException)):
        await client.ping()
    await client.aclose()
