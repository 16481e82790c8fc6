"""A redis-py client for a RedisAddress: standalone, through Sentinel, or a Redis Cluster.

The one place that turns a topology URL into a client, for the worker runtime and the
operator alike. Keyword arguments (timeouts, retry, decode_responses, client_name...) reach
the data connections; the socket_* ones also the sentinels'.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from bullflow_worker.redis_address import RedisAddress

AsyncRedisClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncRedisClient = redis.Redis | redis.cluster.RedisCluster


# redis-py (8.1, issue redis/redis-py#3874) re-resolves the master only in connect(); a
# command's retry reconnects through _connect(), to the host it had: after a failover every
# retry lands on the old master (now a replica, READONLY) until the retries run out. These
# connections ask the sentinels on every socket connect instead.
class _AsyncFollowingConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    async def _connect(self) -> None:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()


class _AsyncFollowingSSLConnection(redis.asyncio.sentinel.SentinelManagedSSLConnection):
    async def _connect(self) -> None:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()


class _FollowingConnection(redis.sentinel.SentinelManagedConnection):
    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


class _FollowingSSLConnection(redis.sentinel.SentinelManagedSSLConnection):
    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


class MasterFailingOver(
    redis.sentinel.MasterNotFoundError, redis.asyncio.sentinel.MasterNotFoundError
):
    """The sentinels watch a master of that name, but none reports it up: a failover is under
    way (or the master and its replicas are down). Unlike a name no sentinel knows, a mistake
    in the URL, waiting fixes this, so callers treat it as Redis being unavailable."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no sentinel reports the master {name!r} up, though they watch it: "
            "a failover is under way, or the master and its replicas are down"
        )


_SENTINEL_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class _AsyncSentinel(redis.asyncio.sentinel.Sentinel):
    async def discover_master(self, service_name: str) -> Any:
        try:
            return await super().discover_master(service_name)
        except redis.asyncio.sentinel.MasterNotFoundError as err:
            if await self._watches(service_name):
                raise MasterFailingOver(service_name) from err
            raise

    async def _watches(self, service_name: str) -> bool:
        for sentinel in self.sentinels:
            with contextlib.suppress(*_SENTINEL_DOWN):
                if service_name in await sentinel.sentinel_masters():
                    return True
        return False


class _Sentinel(redis.sentinel.Sentinel):
    def discover_master(self, service_name: str) -> Any:
        try:
            return super().discover_master(service_name)
        except redis.sentinel.MasterNotFoundError as err:
            if self._watches(service_name):
                raise MasterFailingOver(service_name) from err
            raise

    def _watches(self, service_name: str) -> bool:
        for sentinel in self.sentinels:
            with contextlib.suppress(*_SENTINEL_DOWN):
                if service_name in sentinel.sentinel_masters():
                    return True
        return False


def _tls_kwargs(address: RedisAddress) -> dict[str, Any]:
    return {"ssl": True, **dict(address.tls_options)} if address.tls else {}


def sentinel_kwargs(address: RedisAddress, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Connection arguments for the sentinels themselves: their own credentials, the TLS of
    the URL, and the socket timeouts of the data connections (a sentinel that hangs must
    not hang the caller longer than the master would)."""
    kwargs = {k: v for k, v in redis_kwargs.items() if k.startswith("socket_")}
    if address.sentinel_username:
        kwargs["username"] = address.sentinel_username
    if address.sentinel_password is not None:
        kwargs["password"] = address.sentinel_password
    return {**kwargs, **_tls_kwargs(address)}


def _default_retry(blocking: bool) -> redis.retry.Retry | redis.asyncio.retry.Retry:
    """What redis-py's Redis() retries with when given nothing (up to 10 times on a connection
    error or timeout, 10 ms to 1 s apart). Sentinel.master_for builds its pool without
    Redis(), whose connections would not retry at all: the one reconnect to the new master
    after a failover would surface as an error to every caller."""
    backoff = ExponentialWithJitterBackoff(base=0.01, cap=1)
    return redis.retry.Retry(backoff, 10) if blocking else redis.asyncio.retry.Retry(backoff, 10)


def _sentinel_retry(blocking: bool) -> redis.retry.Retry | redis.asyncio.retry.Retry:
    """None: redis-py's default retries each sentinel call 3 times, 1 s to 10 s apart, on any
    ConnectionError, AuthenticationError (a wrong sentinelPassword) included: asking three
    sentinels then took minutes per master lookup. The lookup itself goes on to the next
    sentinel, and the data connection's retry asks them all again."""
    return (
        redis.retry.Retry(NoBackoff(), 0) if blocking else redis.asyncio.retry.Retry(NoBackoff(), 0)
    )


def data_kwargs(address: RedisAddress, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Connection arguments for the data nodes (a Sentinel's master, a Cluster's nodes)."""
    kwargs: dict[str, Any] = {"username": address.username, "password": address.password}
    if address.topology == "sentinel":
        kwargs["db"] = address.db
    return {**kwargs, **_tls_kwargs(address), **redis_kwargs}


def async_client(address: RedisAddress, **redis_kwargs: Any) -> AsyncRedisClient:
    """An asyncio client. Through Sentinel, the master is looked up on every (re)connect
    (SentinelConnectionPool), so the client follows a failover; a Cluster client learns the
    slots from the seed nodes and follows MOVED/ASK."""
    if address.topology == "standalone":
        return redis.asyncio.Redis.from_url(address.from_url_form, **redis_kwargs)
    if address.topology == "sentinel":
        assert address.master_name is not None
        redis_kwargs.setdefault("retry", _default_retry(blocking=False))
        sentinel = _AsyncSentinel(
            list(address.nodes),
            sentinel_kwargs={
                **sentinel_kwargs(address, redis_kwargs),
                "retry": _sentinel_retry(blocking=False),
            },
            **data_kwargs(address, redis_kwargs),
        )
        following = _AsyncFollowingSSLConnection if address.tls else _AsyncFollowingConnection
        return sentinel.master_for(address.master_name, connection_class=following)
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in address.nodes]
    return redis.asyncio.cluster.RedisCluster(
        startup_nodes=nodes, **data_kwargs(address, redis_kwargs)
    )


def sync_client(address: RedisAddress, **redis_kwargs: Any) -> SyncRedisClient:
    """The blocking twin of `async_client`, for callers outside an event loop."""
    if address.topology == "standalone":
        return redis.Redis.from_url(address.from_url_form, **redis_kwargs)
    if address.topology == "sentinel":
        assert address.master_name is not None
        redis_kwargs.setdefault("retry", _default_retry(blocking=True))
        sentinel = _Sentinel(
            list(address.nodes),
            sentinel_kwargs={
                **sentinel_kwargs(address, redis_kwargs),
                "retry": _sentinel_retry(blocking=True),
            },
            **data_kwargs(address, redis_kwargs),
        )
        following = _FollowingSSLConnection if address.tls else _FollowingConnection
        return sentinel.master_for(address.master_name, connection_class=following)
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in address.nodes]
    return redis.cluster.RedisCluster(startup_nodes=nodes, **data_kwargs(address, redis_kwargs))
