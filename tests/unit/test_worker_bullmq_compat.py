"""bullflow_worker.bullmq_compat reaches into Python bullmq's Worker and redis-py's connection
pool. These tests pin the shape it relies on, so a bullmq or redis-py upgrade that moves it
fails here, loudly, instead of silently bringing back the slow pickup of idle queues.
No Redis needed: nothing here connects."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Worker
from redis.exceptions import ConnectionError as RedisConnectionError

from bullflow_worker.bullmq_compat import (
    BLOCKING_READ_MARGIN,
    DEFAULT_SOCKET_TIMEOUT,
    RECONNECT_BACKOFF_CAP,
    blocking_read_timeout,
    cap_reconnect_backoff,
    fit_blocking_read_timeout,
    is_transient_redis_failure,
    longest_block,
    retry_completion_writes,
    use_own_blocking_client,
)

pytestmark = pytest.mark.unit

URL = "redis://127.0.0.1:1/0"  # never connected to


async def _processor(job: Any, token: str) -> Any:
    raise AssertionError("no job runs here")


@pytest.fixture
async def make_worker() -> AsyncIterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(url: str = URL, **opts: Any) -> Worker:
        w = Worker("q", _processor, {"connection": url, "autorun": False, **opts})
        made.append(w)
        return w

    yield make
    for w in made:
        await w.close()


def _kwargs(worker: Worker, which: str = "blocking") -> dict[str, Any]:
    conn = worker.blockingRedisConnection if which == "blocking" else worker.redisConnection
    assert conn is not None
    kwargs: dict[str, Any] = conn.conn.connection_pool.connection_kwargs
    return kwargs


def _read_timeout(worker: Worker, which: str = "blocking") -> Any:
    return _kwargs(worker, which).get("socket_timeout", DEFAULT_SOCKET_TIMEOUT)


async def test_bullmq_worker_blocks_on_its_own_single_connection_client(
    make_worker: Callable[..., Worker],
) -> None:
    """The shape the workaround patches: a dedicated redis.asyncio client for BZPOPMIN, not
    connected before run(), whose pool builds its connection from `connection_kwargs`."""
    w = make_worker()
    assert w.blockingRedisConnection is not None and w.redisConnection is not None
    client = w.blockingRedisConnection.conn
    assert isinstance(client, aioredis.Redis)
    assert client is not w.redisConnection.conn
    assert client.single_connection_client is True
    assert client.connection is None, "bullmq now connects in Worker(); patch the connection"
    assert isinstance(client.connection_pool.connection_kwargs, dict)
    assert w.backend.bclient is client, "BZPOPMIN no longer goes through blockingRedisConnection"


async def test_bullmq_waits_with_bzpopmin_on_the_marker_for_at_most_the_longest_block(
    make_worker: Callable[..., Worker],
) -> None:
    """`longest_block` mirrors Worker.getBlockTimeout/waitForJob: drainDelay when drained (5 s
    by default), else up to maximumBlockTimeout (10 s) until the next delayed job."""
    w = make_worker()
    assert w.opts["drainDelay"] == 5
    assert w.getBlockTimeout(0) == 5
    assert w.maximumBlockTimeout == 10
    assert w.getBlockTimeout(int(time.time() * 1000) + 60_000) == 10
    assert longest_block(w) == 10

    sent: list[tuple[Any, ...]] = []

    async def bzpopmin(*args: Any) -> None:
        sent.append(args)
        return None

    w.backend.bclient.bzpopmin = bzpopmin  # what waitForJob calls, with the block timeout
    assert await w.waitForJob() == 0
    assert sent == [(f"{w.prefix}:q:marker", 5)]
    assert longest_block(make_worker(drainDelay=30)) == 30
    assert longest_block(make_worker(drainDelay=2.5)) == 10


async def test_redis_py_default_read_timeout_is_what_cuts_the_block_short(
    make_worker: Callable[..., Worker],
) -> None:
    """Why the workaround exists: bullmq sets no socket_timeout, so redis-py's default (5 s
    since redis-py 8) applies, and it is not longer than the 5 s BZPOPMIN. If this fails,
    bullmq or redis-py changed; check whether the workaround is still needed."""
    w = make_worker()
    assert "socket_timeout" not in _kwargs(w)
    assert DEFAULT_SOCKET_TIMEOUT is not None
    assert w.getBlockTimeout(0) >= DEFAULT_SOCKET_TIMEOUT
    conn = w.blockingRedisConnection.conn.connection_pool.make_connection()  # not connected
    assert conn.socket_timeout == DEFAULT_SOCKET_TIMEOUT


async def test_fit_raises_only_the_blocking_read_timeout(
    make_worker: Callable[..., Worker],
) -> None:
    w = make_worker()
    main_before = _read_timeout(w, "main")
    needed = 10 + BLOCKING_READ_MARGIN
    assert fit_blocking_read_timeout(w) == needed
    assert _read_timeout(w) == needed
    kwargs = _kwargs(w)
    if "orig_socket_timeout" in kwargs:  # redis-py 8 resets to it after maintenance events
        assert kwargs["orig_socket_timeout"] == needed
    conn = w.blockingRedisConnection.conn.connection_pool.make_connection()
    assert conn.socket_timeout == needed
    assert _read_timeout(w, "main") == main_before, "the main connection must keep its timeout"
    # idempotent
    assert fit_blocking_read_timeout(w) == needed
    assert _read_timeout(w) == needed


async def test_fit_follows_a_longer_drain_delay(make_worker: Callable[..., Worker]) -> None:
    w = make_worker(drainDelay=30)
    assert fit_blocking_read_timeout(w) == 30 + BLOCKING_READ_MARGIN
    assert math.isclose(_read_timeout(w), 30 + BLOCKING_READ_MARGIN)


@pytest.mark.parametrize(("query", "kept"), [("socket_timeout=60", 60.0), ("", None)])
async def test_fit_keeps_a_long_enough_timeout_from_the_url(
    make_worker: Callable[..., Worker], query: str, kept: float | None
) -> None:
    if not query:
        w = make_worker()
        _kwargs(w)["socket_timeout"] = None  # no read timeout at all (redis-py < 8's default)
    else:
        w = make_worker(f"{URL}?{query}")
    assert fit_blocking_read_timeout(w) == kept
    assert _kwargs(w)["socket_timeout"] == kept


async def test_fit_raises_a_short_timeout_from_the_url(make_worker: Callable[..., Worker]) -> None:
    w = make_worker(f"{URL}?socket_timeout=3")
    assert fit_blocking_read_timeout(w) == 10 + BLOCKING_READ_MARGIN


async def test_fit_leaves_a_client_shared_by_the_caller_alone() -> None:
    client = aioredis.from_url(URL)
    w = Worker("q", _processor, {"connection": client, "autorun": False})
    try:
        assert fit_blocking_read_timeout(w) is None
        assert "socket_timeout" not in client.connection_pool.connection_kwargs
    finally:
        await w.close()
        await client.aclose()


async def test_a_lost_redis_is_retried_every_two_seconds_at_most(make_worker):
    worker = make_worker()
    clients = [worker.redisConnection.conn, worker.blockingRedisConnection.conn]
    before = clients[0].get_retry()._backoff.compute(10)
    assert before > RECONNECT_BACKOFF_CAP  # bullmq's own: up to 20 s between tries
    assert cap_reconnect_backoff(worker) == 2
    for client in clients:
        retry = client.get_retry()
        assert max(retry._backoff.compute(n) for n in range(1, 200)) <= RECONNECT_BACKOFF_CAP
        assert retry._retries >= 100
        assert client.connection_pool.connection_kwargs["retry"] is retry


def _cluster_client(**kwargs: Any) -> Any:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    # Not connected: a RedisCluster discovers its nodes on first use.
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", 1)], **kwargs)


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
async def test_bullmq_shares_a_client_instance_between_main_and_blocking(kind: str) -> None:
    """The shape `use_own_blocking_client` repairs: given a client instance (how a Sentinel or
    Cluster client reaches bullmq), both connections wrap it and BZPOPMIN goes through it."""
    client = aioredis.from_url(URL) if kind == "standalone" else _cluster_client()
    w = Worker("q", _processor, {"connection": client, "autorun": False})
    try:
        assert w.redisConnection is not None and w.blockingRedisConnection is not None
        assert w.redisConnection.conn is client
        assert w.blockingRedisConnection.conn is client
        assert w.backend.bclient is client
    finally:
        await w.close()


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
async def test_own_blocking_client_takes_bzpopmin_and_is_closed_with_the_worker(kind: str) -> None:
    make = (lambda **kw: aioredis.from_url(URL, **kw)) if kind == "standalone" else _cluster_client
    main = make()
    w = Worker("q", _processor, {"connection": main, "autorun": False})
    blocking = make(socket_timeout=blocking_read_timeout(w))
    closed: list[Any] = []
    for client in (main, blocking):
        original = client.aclose

        async def aclose(client: Any = client, original: Any = original) -> None:
            closed.append(client)
            await original()

        client.aclose = aclose  # type: ignore[method-assign]
    assert use_own_blocking_client(w, blocking) is True
    assert w.backend.bclient is blocking, "bullmq no longer sends BZPOPMIN through bclient"
    assert w.bclient is blocking
    assert w.redisConnection is not None and w.redisConnection.conn is main
    assert w.backend.scripts.redisClient is main, "scripts must stay on the main client"
    await w.close()
    assert closed.count(main) == 1 and closed.count(blocking) == 1


async def test_own_blocking_client_is_not_installed_over_bullmqs_own(
    make_worker: Callable[..., Worker],
) -> None:
    w = make_worker()
    spare = aioredis.from_url(URL)
    before = w.blockingRedisConnection.conn  # type: ignore[union-attr]
    assert use_own_blocking_client(w, spare) is False
    assert w.blockingRedisConnection.conn is before  # type: ignore[union-attr]
    await spare.aclose()


async def test_blocking_read_timeout_outlasts_the_longest_bzpopmin(
    make_worker: Callable[..., Worker],
) -> None:
    assert blocking_read_timeout(make_worker()) == 10 + BLOCKING_READ_MARGIN
    assert blocking_read_timeout(make_worker(drainDelay=30)) == 30 + BLOCKING_READ_MARGIN


def test_bullmq_fails_a_job_whose_completion_write_raised() -> None:
    """The behaviour retry_completion_writes works around: any error of the completion write
    sends the job that succeeded to moveToFailed."""
    source = inspect.getsource(Worker.processJob)
    write = source.index("self.backend.moveToCompleted(")
    assert source.index("except Exception as err:", write) < source.index("moveToFailed(", write)


async def test_a_completion_write_cut_by_a_failover_is_retried(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker()
    calls: list[int] = []
    failures: list[BaseException] = [RedisConnectionError("lost"), _torn_connection_error()]

    async def write(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return {"result": None, "finishedOn": 1}

    worker.backend.moveToCompleted = write
    retry_completion_writes(worker, delay=0.001)
    assert await worker.backend.moveToCompleted("job", 1, False, "token", fetch_next=False) == {
        "result": None,
        "finishedOn": 1,
    }
    assert len(calls) == 3


async def test_a_refused_completion_write_is_not_retried(
    make_worker: Callable[..., Worker],
) -> None:
    worker = make_worker()
    calls: list[int] = []

    async def write(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise TypeError("Missing lock for job 1. moveToFinished")

    worker.backend.moveToCompleted = write
    retry_completion_writes(worker, delay=0.001)
    with pytest.raises(TypeError, match="Missing lock"):
        await worker.backend.moveToCompleted("job", 1, False, "token")
    assert len(calls) == 1


def _torn_connection_error() -> AttributeError:
    """redis-py's own AttributeError on a connection closed while a command was sent."""
    from redis.asyncio import connection

    try:
        exec("writer = None\nwriter.writelines([])", vars(connection).copy())
    except AttributeError as err:
        return err
    raise AssertionError("no error")


def test_only_redis_pys_own_attribute_errors_count_as_transient() -> None:
    assert is_transient_redis_failure(_torn_connection_error())
    try:
        None.writelines  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as err:
        assert not is_transient_redis_failure(err)  # a bug of ours, not a failover
    assert is_transient_redis_failure(RedisConnectionError("lost"))
    assert not is_transient_redis_failure(ValueError("bad"))
