"""Redis failures become conditions that say what to fix: a wrong password, a Sentinel master name
nobody knows, or Redis simply not answering. The texts are those redis-py 8 raises (shortened
client reprs), as met against real servers in tests/integration/test_redis_clients.py."""

from __future__ import annotations

import pytest
import redis.asyncio.sentinel
import redis.sentinel
from redis.exceptions import AuthenticationError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullflow.services.redis_failure import (
    REDIS_AUTH_FAILED,
    REDIS_MASTER_NOT_FOUND,
    REDIS_UNAVAILABLE,
    classify_redis_failure,
)
from bullflow_worker.redis_clients import MasterFailingOver

pytestmark = pytest.mark.unit

PASSWORD = "hunter2-data"
SENTINEL_PASSWORD = "hunter3-sentinel"
SENTINEL_URL = (
    f"redis+sentinel://:{PASSWORD}@s1:26379,s2:26380/mymaster?sentinelPassword={SENTINEL_PASSWORD}"
)
STANDALONE_URL = f"redis://:{PASSWORD}@redis.ns:6379/0"
CLUSTER_URL = f"redis+cluster://:{PASSWORD}@n1:7000,n2:7001"


def sentinel_client_repr(port: int) -> str:
    return (
        "<redis.asyncio.client.Redis(<redis.asyncio.connection.ConnectionPool(<redis.asyncio."
        f"connection.Connection(db=0,username=<REDACTED>,host=127.0.0.1,port={port})>)>)>"
    )


def sentinels_failed(error: str) -> str:
    return "No master found for 'mymaster' : " + ", ".join(
        f"{sentinel_client_repr(port)} - {error}" for port in (26379, 26380)
    )


@pytest.mark.parametrize(
    "master_not_found",
    [redis.asyncio.sentinel.MasterNotFoundError, redis.sentinel.MasterNotFoundError],
)
def test_unknown_master_name_names_the_master_and_the_sentinels(master_not_found):
    failure = classify_redis_failure(
        master_not_found("No master found for 'mymaster'"), SENTINEL_URL
    )
    assert failure.reason == REDIS_MASTER_NOT_FOUND
    assert failure.message == (
        "no sentinel at s1:26379,s2:26380 watches a master named 'mymaster': check the "
        "master name, the path of redis+sentinel://host:26379/<master>"
    )


def test_a_watched_master_that_no_sentinel_reports_up_is_a_failover_to_wait_for():
    failure = classify_redis_failure(MasterFailingOver("mymaster"), SENTINEL_URL)
    assert failure.reason == REDIS_UNAVAILABLE
    assert "a failover is under way" in failure.message
    assert "s1:26379,s2:26380" in failure.message


def test_sentinels_refusing_their_password_is_an_auth_failure():
    err = redis.asyncio.sentinel.MasterNotFoundError(sentinels_failed("auth:AuthenticationError"))
    failure = classify_redis_failure(err, SENTINEL_URL)
    assert failure.reason == REDIS_AUTH_FAILED
    assert failure.message.startswith(
        "the sentinels at s1:26379,s2:26380 refused their credentials (sentinelUsername and "
        "sentinelPassword in the URL's query"
    )
    assert failure.message.endswith(": auth:AuthenticationError")  # once, without the reprs


def test_no_sentinel_answering_is_unavailable():
    err = redis.asyncio.sentinel.MasterNotFoundError(
        sentinels_failed("ConnectionError('Error 111 connecting to 127.0.0.1:26379.')")
    )
    failure = classify_redis_failure(err, SENTINEL_URL)
    assert failure.reason == REDIS_UNAVAILABLE
    assert failure.message.startswith("no sentinel at s1:26379,s2:26380 gave the master's address")
    assert "<redis.asyncio" not in failure.message


@pytest.mark.parametrize("url", [STANDALONE_URL, SENTINEL_URL, CLUSTER_URL])
def test_wrong_data_password_is_an_auth_failure(url):
    err = AuthenticationError("invalid username-password pair or user is disabled.")
    failure = classify_redis_failure(err, url)
    assert failure.reason == REDIS_AUTH_FAILED
    assert "refused the credentials of the connection (the user and password in the URL)" in (
        failure.message
    )


@pytest.mark.parametrize(
    "text",
    [
        "Redis Cluster cannot be connected. Please provide at least one reachable node: invalid "
        "username-password pair or user is disabled.",
        "Redis Cluster cannot be connected. Please provide at least one reachable node: HELLO "
        "must be called with the client already authenticated, otherwise ...",
    ],
)
def test_cluster_refusing_the_password_is_an_auth_failure(text):
    failure = classify_redis_failure(RedisClusterException(text), CLUSTER_URL)
    assert failure.reason == REDIS_AUTH_FAILED
    assert failure.message.startswith("Redis at redis+cluster://n1:7000,n2:7001 refused")


@pytest.mark.parametrize(
    ("err", "url"),
    [
        (
            RedisConnectionError("Error 111 connecting to redis.ns:6379. Connection refused."),
            STANDALONE_URL,
        ),
        (RedisTimeoutError("Timeout reading from redis.ns:6379"), STANDALONE_URL),
        (TimeoutError(), SENTINEL_URL),
        (
            RedisClusterException("Redis Cluster cannot be connected: Connection refused"),
            CLUSTER_URL,
        ),
        # A MasterNotFoundError for a URL that is no Sentinel URL (cannot happen): no guessing.
        (redis.sentinel.MasterNotFoundError("No master found for 'x'"), STANDALONE_URL),
    ],
)
def test_anything_else_is_unavailable(err, url):
    failure = classify_redis_failure(err, url)
    assert failure.reason == REDIS_UNAVAILABLE
    assert " is unreachable: " in failure.message


@pytest.mark.parametrize(
    "err",
    [
        AuthenticationError(f"WRONGPASS for {PASSWORD}"),
        RedisConnectionError(f"connecting to redis://:{PASSWORD}@redis.ns failed"),
        redis.asyncio.sentinel.MasterNotFoundError(
            sentinels_failed(f"auth:AuthenticationError('AUTH {SENTINEL_PASSWORD}')")
        ),
    ],
)
def test_messages_never_carry_a_password(err):
    from bullflow.redaction import remember_url

    remember_url(SENTINEL_URL)
    remember_url(STANDALONE_URL)
    for url in (SENTINEL_URL, STANDALONE_URL):
        message = classify_redis_failure(err, url).message
        assert PASSWORD not in message and SENTINEL_PASSWORD not in message
