"""Workarounds for Python bullmq / redis-py behaviour that the runtime depends on.

Each one names the versions and functions it works around; tests/unit/test_worker_bullmq_compat.py
fails loudly when the internals it touches change shape.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from bullmq import Worker
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    TimeoutError,
    TryAgainError,
)

try:  # redis-py >= 8: 5 s; older redis-py had no read timeout by default (None)
    from redis._defaults import DEFAULT_SOCKET_TIMEOUT
except ImportError:  # pragma: no cover - redis-py < 8
    DEFAULT_SOCKET_TIMEOUT = None  # type: ignore[assignment]

# How much longer than the longest BZPOPMIN the blocking connection waits for its reply before
# it gives the connection up as dead: covers the round trip, a busy Redis and a busy event loop.
BLOCKING_READ_MARGIN = 10.0
# A lost Redis is retried at least this often: ioredis (Node BullMQ) reconnects within 2 s.
RECONNECT_BACKOFF_CAP = 2.0
# ... for about as long as bullmq's own policy kept retrying (20 tries of up to 20 s).
RECONNECT_RETRIES = 200
# A completion write cut by a failover is tried this many times in all, waiting a little longer
# each time (the new master is usually answering within a few seconds).
COMPLETION_TRIES = 8
COMPLETION_RETRY_DELAY = 0.25
TRANSIENT_REDIS_ERRORS = (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    TimeoutError,
    TryAgainError,
)


def longest_block(worker: Worker) -> float:
    """The longest BZPOPMIN timeout `worker` sends, in seconds.

    bullmq 3.4.4 `Worker.waitForJob` blocks for `getBlockTimeout(blockUntil)`, rounded up
    (`math.ceil`, Redis < 6 compatibility): `drainDelay` when the queue is drained, else the
    time until the next delayed job capped at `maximumBlockTimeout` (10 s).
    """
    return float(max(math.ceil(worker.getBlockTimeout(0)), worker.maximumBlockTimeout))


def fit_blocking_read_timeout(worker: Worker, margin: float = BLOCKING_READ_MARGIN) -> float | None:
    """Let the worker's blocking connection wait out its own BZPOPMIN; return its read timeout.

    Works around Python bullmq 3.4.4 (`RedisConnection.__init__`, redis_connection.py) on
    redis-py >= 8.0: bullmq builds its clients with `redis.from_url(url, ...)` and sets no
    `socket_timeout`, and redis-py 8 changed that default from None (wait forever) to 5 s
    (`redis._defaults.DEFAULT_SOCKET_TIMEOUT`). An idle worker's `Worker.waitForJob` sends
    `BZPOPMIN <prefix>:<queue>:marker 5` (drainDelay 5 s) on the blocking connection, so the
    client's read times out just as Redis answers; bullmq's own `Retry(ExponentialBackoff(cap=20,
    base=1), 20)` then drops the connection, sleeps 2, 4, 8, 16, 20, 20... s and resends the
    same BZPOPMIN. A job added while it sleeps waits for the sleep: 1-20 s, ~8 s on average
    once a queue has been idle for a minute, and 15 s more (`runRetryDelay`) when the 20
    retries run out. Node BullMQ (ioredis, no read timeout) picks it up in milliseconds.

    The fix raises the read timeout of the *blocking* client only (bullmq's
    `Worker.blockingRedisConnection.conn`, used for nothing but BZPOPMIN) to the longest block
    plus `margin`, before its connection is opened; a timeout already at least that long (or
    None, e.g. `?socket_timeout=` in the URL) is kept. Redis still answers every idle BZPOPMIN
    after drainDelay, so the idle cost is Node's: one BZPOPMIN and one moveToActive per
    drainDelay. The main connection keeps redis-py's 5 s.
    """
    blocking = worker.blockingRedisConnection
    main = worker.redisConnection
    if blocking is None or main is None or blocking.conn is main.conn:
        return None  # not a Redis backend, or the caller shares one client on purpose
    client: Any = blocking.conn
    kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    current = kwargs.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    needed = longest_block(worker) + margin
    if current is None or current >= needed:
        return None if current is None else float(current)
    kwargs["socket_timeout"] = needed
    # redis-py 8 keeps the value a maintenance notification resets the timeout to.
    if "orig_socket_timeout" in kwargs:
        kwargs["orig_socket_timeout"] = needed
    conn = client.connection
    if conn is not None:  # already connected (not the case before Worker.run)
        conn.socket_timeout = needed
        if hasattr(conn, "orig_socket_timeout"):
            conn.orig_socket_timeout = needed
    return needed


def cap_reconnect_backoff(
    worker: Worker, cap: float = RECONNECT_BACKOFF_CAP, retries: int = RECONNECT_RETRIES
) -> int:
    """Retry a lost Redis every `cap` seconds at most; return how many clients were changed.

    Works around Python bullmq 3.4.4 (`RedisConnection.__init__`, redis_connection.py), which
    builds its clients with `Retry(ExponentialBackoff(cap=20, base=1), 20)`: after an outage a
    worker sleeps up to 20 s between tries, so it takes up to 20 s after Redis is back to work
    again (and 15 s more, `runRetryDelay`, once the 20 tries are spent); jobs wait meanwhile.
    Node BullMQ (ioredis) reconnects within 2 s. Same errors retried (busy loading, connection,
    timeout), through redis-py's public `Redis.set_retry`, on both the main and the blocking
    client; the total time retried stays about bullmq's (minutes), so a worker still gives up
    on a Redis that never comes back.
    """
    changed = 0
    for connection in (worker.redisConnection, worker.blockingRedisConnection):
        client: Any = getattr(connection, "conn", None)
        if client is None:
            continue
        backoff = ExponentialBackoff(cap=cap, base=min(0.1, cap))
        client.set_retry(Retry(backoff, retries, (BusyLoadingError, ConnectionError, TimeoutError)))
        changed += 1
    return changed


def blocking_read_timeout(worker: Worker, margin: float = BLOCKING_READ_MARGIN) -> float:
    """The read timeout a client used for nothing but `worker`'s BZPOPMIN needs."""
    return longest_block(worker) + margin


def use_own_blocking_client(worker: Worker, client: Any) -> bool:
    """Make `client` the worker's blocking (BZPOPMIN) client if bullmq shares the main one.

    Works around Python bullmq 3.4.4 `create_redis_backend` (backends/redis_backend.py): given
    a client instance as `opts["connection"]` (the only way to hand it a Sentinel-managed
    client or a `RedisCluster`), it wraps that one instance in both the main and the blocking
    `RedisConnection`. The idle BZPOPMIN then runs with the main client's 5 s read timeout (the
    slow pickup `fit_blocking_read_timeout` describes, which it cannot fix without slowing the
    main commands' failure detection too), and closing the worker closes the one client twice.
    `client` should be built for the same Redis with `blocking_read_timeout(worker)`.
    bullmq reads the blocking client through `RedisBackend.bclient`
    (`blocking_connection.conn`) and closes it with `blocking_connection.close()`; both follow.
    Returns False (and leaves `client` unused) when the worker already has its own.
    """
    blocking = worker.blockingRedisConnection
    main = worker.redisConnection
    if blocking is None or main is None or blocking.conn is not main.conn:
        return False
    blocking.conn = client
    worker.bclient = client
    return True


def is_transient_redis_failure(err: BaseException) -> bool:
    """A Redis error a retry can get past: the connection lost or the cluster re-electing, or
    redis-py's own AttributeError on a connection torn down while a command was being sent
    (its async `Connection._writer` already None: seen during a Cluster master failover)."""
    if isinstance(err, TRANSIENT_REDIS_ERRORS):
        return True
    if not isinstance(err, AttributeError) or err.__traceback__ is None:
        return False
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("redis.")


def retry_completion_writes(
    worker: Worker, tries: int = COMPLETION_TRIES, delay: float = COMPLETION_RETRY_DELAY
) -> None:
    """Retry a job's completion write through a failover instead of failing the job.

    Works around Python bullmq 3.4.4 `Worker.processJob` (worker.py): when
    `backend.moveToCompleted` raises, the job that succeeded is moved to *failed* with the
    Redis error as its reason (a few jobs in each Cluster failover). Retrying is safe: BullMQ's
    moveToFinished script checks the job's lock token, so a write that did land the first time
    is refused the second time ("Missing lock"), and the job stays completed once.
    """
    backend: Any = worker.backend
    write: Callable[..., Awaitable[Any]] = backend.moveToCompleted

    async def move_to_completed(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, tries + 1):
            try:
                return await write(*args, **kwargs)
            except Exception as err:
                if attempt == tries or not is_transient_redis_failure(err):
                    raise
                await asyncio.sleep(delay * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    backend.moveToCompleted = move_to_completed
