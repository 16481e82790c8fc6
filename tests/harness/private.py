"""A control plane and a Redis of one test's own, for tests that install cluster-wide objects
(CRDs, a Helm release) or stop components: nothing of the session's cluster is touched."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.harness.cluster import LocalCluster
from tests.harness.redis import RedisServer
from tests.harness.tools import Tools


@contextlib.contextmanager
def private_cluster(tools: Tools, workdir: Path) -> Iterator[tuple[LocalCluster, RedisServer]]:
    """An empty local cluster and Redis under workdir, stopped on exit."""
    with contextlib.ExitStack() as stack:
        cluster = LocalCluster(workdir / "cluster", tools=tools)
        cluster.start()
        stack.callback(cluster.stop)
        redis = RedisServer(workdir / "redis")
        redis.start()
        stack.callback(redis.stop)
        yield cluster, redis
