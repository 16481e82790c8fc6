"""pytest fixtures for the production Redis topologies (loaded by tests/conftest.py).

session (shared; tests must not break them): redis_cluster, redis_sentinel
function (a fresh one per test, for destructive tests: failovers, kills): fresh_redis_cluster,
fresh_redis_sentinel

Both carry a password (and the sentinels one of their own), as production installs do, so
every test also proves the credentials in the URL reach every node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.redis_topologies import RedisClusterTopology, RedisSentinelTopology

CLUSTER_PASSWORD = "cluster-pw-7f3a"
SENTINEL_DATA_PASSWORD = "data-pw-91c2"
SENTINEL_PASSWORD = "sentinel-pw-4e8d"


def new_cluster(workdir: Path) -> RedisClusterTopology:
    return RedisClusterTopology(workdir, password=CLUSTER_PASSWORD)


def new_sentinel(workdir: Path) -> RedisSentinelTopology:
    return RedisSentinelTopology(
        workdir, password=SENTINEL_DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD
    )


def _run_cluster(workdir: Path) -> Iterator[RedisClusterTopology]:
    topology = new_cluster(workdir)
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


def _run_sentinel(workdir: Path) -> Iterator[RedisSentinelTopology]:
    topology = new_sentinel(workdir)
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterTopology]:
    yield from _run_cluster(tmp_path_factory.mktemp("redis-cluster"))


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelTopology]:
    yield from _run_sentinel(tmp_path_factory.mktemp("redis-sentinel"))


@pytest.fixture
def fresh_redis_cluster(tmp_path: Path) -> Iterator[RedisClusterTopology]:
    yield from _run_cluster(tmp_path / "redis-cluster")


@pytest.fixture
def fresh_redis_sentinel(tmp_path: Path) -> Iterator[RedisSentinelTopology]:
    yield from _run_sentinel(tmp_path / "redis-sentinel")
