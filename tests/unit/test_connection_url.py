"""InvalidConnection: the condition names where the URL came from and what is wrong with it,
never the URL (a Secret's value may be a password in the wrong key)."""

from __future__ import annotations

import asyncio

import pytest

from bullflow.controllers.connections import ConnectionUnresolved, RedisPool, url_problem
from bullflow.models.common import SecretKeyRef


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "is empty"),
        ("s3cret-password", "is not a URL (no scheme://)"),
        ("pw:with-colon", "is not a URL (no scheme://)"),
        (
            "http://user:s3cret@redis:6379",
            "has a scheme other than redis://, rediss://, unix://, redis+sentinel://, "
            "rediss+sentinel://, redis+cluster:// or rediss+cluster://",
        ),
        (
            "redis+sentinel://:s3cret@s1,s2:26379",
            "has no Sentinel master name: add the "
            "master name as the path: redis+sentinel://host:26379/mymaster",
        ),
        ("redis+cluster://:s3cret@n1/1", "names a database, but Redis Cluster has only database 0"),
        (
            "unix:///run/redis.sock",
            "is a unix:// socket, which the operator cannot share with its workers' pods",
        ),
        ("redis+sentinel://:s3cret@s1,[::1]:26380/mymaster?sentinelPassword=x", None),
        ("rediss+cluster://:s3cret@n1:7000,n2", None),
        ("redis://:s3cret@", "has no host"),
        ("redis://[::1:6379", "cannot be parsed (a bad host or port)"),
        ("redis://redis:port", "cannot be parsed (a bad host or port)"),
        ("redis://redis:6379/0", None),
        ("rediss://:s3cret@redis.example:6380", None),
    ],
)
def test_url_problem(url, problem):
    assert url_problem(url) == problem


class SecretsOnly:
    """The one KubeApi call resolve() makes: a Secret's value by namespace, name and key."""

    def __init__(self, values: dict[tuple[str, str, str], str]) -> None:
        self.values = values

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.values.get((namespace, name, key))


def resolve_error(value: str, default_url: str | None = None) -> ConnectionUnresolved:
    kube = SecretsOnly({("team-a", "redis-conn", "url"): value})
    pool = RedisPool(kube, default_url, timeout=1)  # type: ignore[arg-type]
    with pytest.raises(ConnectionUnresolved) as caught:
        asyncio.run(pool.resolve("team-a", SecretKeyRef(name="redis-conn", key="url")))
    return caught.value


def test_secret_with_a_bad_url_names_the_secret_and_key_not_the_value():
    err = resolve_error("http://admin:hunter2-pass@redis:6379")
    assert err.reason == "InvalidConnection"
    assert err.message == (
        "the key 'url' of Secret team-a/redis-conn has a scheme other than redis://, "
        "rediss://, unix://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or "
        "rediss+cluster://"
    )
    assert "hunter2" not in err.message and "admin" not in err.message


def test_secret_holding_a_bare_password_is_not_echoed():
    err = resolve_error("hunter2-pass\n")
    assert "team-a/redis-conn" in err.message and "'url'" in err.message
    assert "is not a URL" in err.message and "hunter2" not in err.message


def test_sentinel_url_without_master_name_says_how_to_fix_it():
    err = resolve_error("redis+sentinel://:hunter2-pass@sentinel:26379?sentinelPassword=hunter3")
    assert err.reason == "InvalidConnection"
    assert err.message == (
        "the key 'url' of Secret team-a/redis-conn has no Sentinel master name: add the master "
        "name as the path: redis+sentinel://host:26379/mymaster"
    )


def test_bad_default_url_names_the_environment_variable():
    pool = RedisPool(SecretsOnly({}), "localhost:6379", timeout=1)  # type: ignore[arg-type]
    with pytest.raises(ConnectionUnresolved) as caught:
        asyncio.run(pool.resolve("team-a", None))
    assert caught.value.reason == "InvalidConnection"
    assert caught.value.message.startswith(
        "the operator's default Redis URL (BULLFLOW_REDIS_URL) is not a URL (no scheme://)"
    )
