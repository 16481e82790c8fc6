"""The harness's Redis Cluster and Sentinel come up, replicate, and fail over for real."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis

from tests.harness.process import pid_alive
from tests.harness.redis_topologies import (
    RedisClusterTopology,
    RedisSentinelTopology,
    command,
)


def test_cluster_write_on_master_is_read_on_its_replica(
    redis_cluster: RedisClusterTopology,
) -> None:
    key = f"{{bull}}:smoke:{uuid.uuid4().hex}"
    client = redis_cluster.client()
    try:
        client.set(key, "written")
    finally:
        client.close()
    master = redis_cluster.master_for(key)
    replica = redis_cluster.replica_for(key)
    assert master.port != replica.port
    # WAIT: the write has reached the replica before it is read there.
    assert command(master.port, redis_cluster.password, "WAIT", 1, 5000) >= 1
    direct = redis.Redis(port=replica.port, password=redis_cluster.password, decode_responses=True)
    try:
        direct.execute_command("READONLY")
        assert direct.get(key) == "written"
    finally:
        direct.close()
    slots = redis_cluster.slot_ranges()
    assert len(slots) == 3 and all(len(r.replicas) == 1 for r in slots)
    assert sum(r.end - r.start + 1 for r in slots) == 16384


def test_sentinel_write_on_master_is_read_on_the_replica(
    redis_sentinel: RedisSentinelTopology,
) -> None:
    key = f"smoke:{uuid.uuid4().hex}"
    client = redis_sentinel.client()
    try:
        client.set(key, "written")
    finally:
        client.close()
    master = redis_sentinel.master()
    assert command(master.port, redis_sentinel.password, "WAIT", 1, 5000) >= 1
    (replica,) = redis_sentinel.replicas()
    assert command(replica.port, redis_sentinel.password, "GET", key) == "written"
    assert command(replica.port, redis_sentinel.password, "ROLE")[0] == "slave"


def test_cluster_kill_master_elects_its_replica_and_restart_rejoins(
    fresh_redis_cluster: RedisClusterTopology,
) -> None:
    topology = fresh_redis_cluster
    client = topology.client()
    try:
        client.set("{bull}:before", "kept")
        command(topology.master_for("{bull}").port, topology.password, "WAIT", 1, 5000)
        replica = topology.replica_for("{bull}")
        old = topology.kill_master("{bull}")
        assert old.proc is None and not old.running()
        new = topology.wait_for_new_master(old, "{bull}")
        assert new.port == replica.port
        # The client follows the failover (MOVED / a refreshed slot map); the write survived.
        assert client.get("{bull}:before") == "kept"
        client.set("{bull}:after", "written")
        topology.restart(old)
        assert topology.slot_owner("{bull}").replicas == (old.port,)
        # A manual failover hands the slot back without losing a write.
        back_from, back_to = topology.cluster_failover("{bull}")
        assert (back_from.port, back_to.port) == (new.port, old.port)
        assert client.get("{bull}:after") == "written"
    finally:
        client.close()


def test_sentinel_kill_master_promotes_the_replica(
    fresh_redis_sentinel: RedisSentinelTopology,
) -> None:
    topology = fresh_redis_sentinel
    client = topology.client()
    try:
        client.set("before", "kept")
        old = topology.master()
        command(old.port, topology.password, "WAIT", 1, 5000)
        (replica,) = topology.replicas()
        topology.kill_master()
        new = topology.wait_for_new_master(old)
        assert new.port == replica.port
        assert client.get("before") == "kept"  # master_for() asks the sentinels again
        topology.restart(old)
        assert command(old.port, topology.password, "ROLE")[0] == "slave"
        assert [r.port for r in topology.replicas()] == [old.port]
    finally:
        client.close()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    """Also without passwords (the fixtures always set them)."""
    workdir = tmp_path
    cluster = RedisClusterTopology(workdir / "c")
    sentinel = RedisSentinelTopology(workdir / "s")
    try:
        cluster.start()
        sentinel.start()
        pids = cluster.pids() + sentinel.pids()
        assert len(pids) == 6 + 2 + 3
    finally:
        cluster.stop()
        sentinel.stop()
    assert not [p for p in pids if pid_alive(p)]
