"""The Redis topology URL: every form parses to the address it names, every mistake has its own
message, and no message nor redacted URL repeats a password."""

from __future__ import annotations

import pytest

from bullflow_worker.config import validate_redis_url
from bullflow_worker.errors import UsageError
from bullflow_worker.redis_address import (
    RedisAddress,
    RedisAddressError,
    parse_redis_address,
    redact_redis_url,
    url_secrets,
)

SECRET = "s3cret-pw"


def test_standalone_defaults():
    a = parse_redis_address("redis://localhost")
    assert (a.topology, a.nodes, a.db, a.tls) == ("standalone", (("localhost", 6379),), 0, False)
    assert (a.username, a.password, a.master_name) == (None, None, None)


def test_standalone_full_tls():
    a = parse_redis_address(f" rediss://app:{SECRET}@redis.example.com:6380/2 \n")
    assert a.topology == "standalone" and a.tls
    assert a.nodes == (("redis.example.com", 6380),)
    assert (a.username, a.password, a.db) == ("app", SECRET, 2)
    assert a.url == f"rediss://app:{SECRET}@redis.example.com:6380/2"


def test_standalone_password_only_and_query_kept():
    a = parse_redis_address(f"redis://:{SECRET}@10.0.0.1?ssl_cert_reqs=none")
    assert (a.username, a.password, a.nodes) == (None, SECRET, (("10.0.0.1", 6379),))
    # redis-py reads a user-info without ":" as the password
    assert parse_redis_address("redis://token@h").password == "token"


def test_unix_socket():
    a = parse_redis_address("unix:///var/run/redis.sock?db=1")
    assert (a.topology, a.nodes, a.socket_path) == ("standalone", (), "/var/run/redis.sock")


def test_sentinel_every_part():
    a = parse_redis_address(
        f"redis+sentinel://app:{SECRET}@s1,s2:26380,[::1]:26381/mymaster/3"
        "?sentinelUsername=watch&sentinelPassword=sp%40ss"
    )
    assert a == RedisAddress(
        topology="sentinel",
        nodes=(("s1", 26379), ("s2", 26380), ("::1", 26381)),
        url=a.url,
        master_name="mymaster",
        db=3,
        username="app",
        password=SECRET,
        sentinel_username="watch",
        sentinel_password="sp@ss",
        tls=False,
    )


def test_sentinel_tls_minimal():
    a = parse_redis_address("rediss+sentinel://sentinel.ns.svc/my%20master")
    assert (a.topology, a.tls, a.master_name, a.db) == ("sentinel", True, "my master", 0)
    assert a.nodes == (("sentinel.ns.svc", 26379),)
    assert (a.password, a.sentinel_password) == (None, None)


def test_cluster_seed_nodes():
    a = parse_redis_address(f"rediss+cluster://:{SECRET}@n1:7000,n2,[fe80::1]")
    assert (a.topology, a.tls, a.password) == ("cluster", True, SECRET)
    assert a.nodes == (("n1", 7000), ("n2", 6379), ("fe80::1", 6379))
    assert parse_redis_address("redis+cluster://n1:7000/").nodes == (("n1", 7000),)


def test_percent_encoding_and_unencoded_at_in_password():
    a = parse_redis_address("redis://us%3Aer:p%40ss%2Fword@h:1")
    assert (a.username, a.password) == ("us:er", "p@ss/word")
    b = parse_redis_address("redis://:p@ss@h:1/0")
    assert (b.password, b.nodes, b.db) == ("p@ss", (("h", 1),), 0)


def test_tls_options_only_with_tls():
    a = parse_redis_address("rediss+cluster://n1?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem")
    assert a.tls_options == (("ssl_cert_reqs", "none"), ("ssl_ca_certs", "/ca.pem"))
    with pytest.raises(RedisAddressError, match="unknown option 'ssl_cert_reqs'"):
        parse_redis_address("redis+cluster://n1?ssl_cert_reqs=none")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "is empty"),
        (SECRET, "is not a URL (no scheme://)"),
        (f"http://u:{SECRET}@h", "has a scheme other than redis://, rediss://, unix://"),
        (f"redis://:{SECRET}@", "has no host"),
        (f"redis+sentinel://:{SECRET}@,s2/m", "has no host"),
        (f"redis://:{SECRET}@[::1:6379", "cannot be parsed (a bad host or port)"),
        (f"redis://:{SECRET}@h:port", "cannot be parsed (a bad host or port)"),
        (f"redis://:{SECRET}@h:0", "has a port outside 1-65535"),
        (f"redis://:{SECRET}@h:65536", "has a port outside 1-65535"),
        (f"redis://:{SECRET}@h/zero", "has a database (the path) that is not a number"),
        (f"redis://:{SECRET}@a,b", "lists several hosts: use redis+sentinel://"),
        (
            f"redis+sentinel://:{SECRET}@s1:26379",
            "has no Sentinel master name: add the master name as the path: "
            "redis+sentinel://host:26379/mymaster",
        ),
        (f"redis+sentinel://:{SECRET}@s1/m/x", "has a database (the path) that is not a number"),
        (
            f"redis+cluster://:{SECRET}@n1/2",
            "names a database, but Redis Cluster has only database 0",
        ),
        (
            f"redis+sentinel://s1/m?sentinelPasword={SECRET}",
            "has an unknown option 'sentinelPasword' (a sentinel URL takes sentinelUsername "
            "and sentinelPassword)",
        ),
        (f"unix://:{SECRET}@", "needs a socket path: unix:///path/to/redis.sock"),
    ],
)
def test_each_error_names_the_problem_never_the_password(url, problem):
    with pytest.raises(RedisAddressError) as caught:
        parse_redis_address(url)
    assert caught.value.problem.startswith(problem)
    assert str(caught.value) == f"the Redis URL {caught.value.problem}"
    assert SECRET not in str(caught.value)
    if url:
        with pytest.raises(UsageError) as usage:
            validate_redis_url(url)
        assert problem in str(usage.value) and SECRET not in str(usage.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://h:1", "redis://h:1"),
        (f"redis://:{SECRET}@h:1/0", "redis://:***@h:1/0"),
        (f"redis://u:{SECRET}@h", "redis://u:***@h"),
        (f"redis://{SECRET}@h", "redis://***@h"),
        (f"redis://:p@ss/{SECRET}@h", "redis://:***@h"),
        (
            f"redis+sentinel://u:{SECRET}@s1,s2/m?sentinelUsername=w&sentinelPassword={SECRET}",
            "redis+sentinel://u:***@s1,s2/m?sentinelUsername=w&sentinelPassword=***",
        ),
        (
            f"rediss+sentinel://s1/m?sentinelPassword={SECRET}&sentinelUsername=w",
            "rediss+sentinel://s1/m?sentinelPassword=***&sentinelUsername=w",
        ),
        (f"redis://h?password={SECRET}", "redis://h?password=***"),
        (f"redis://h?sentinelPasword={SECRET}", "redis://h?sentinelPasword=***"),
        (f"redis://:{SECRET}@h:port", "redis://:***@h:port"),
        (SECRET, "***"),
    ],
)
def test_redaction_masks_password_and_sentinel_password(url, redacted):
    assert redact_redis_url(url) == redacted
    assert SECRET not in redact_redis_url(url)


def test_repr_does_not_show_passwords():
    a = parse_redis_address(f"redis+sentinel://:{SECRET}@s/m?sentinelPassword={SECRET}x")
    assert SECRET not in repr(a)
    assert SECRET not in a.redacted


@pytest.mark.parametrize(
    ("url", "encoded"),
    [
        ("redis://h:1/0", "redis://h:1/0"),
        ("redis://:p@ss/w?rd@h:1/0", "redis://:p%40ss%2Fw%3Frd@h:1/0"),
        ("rediss://app:p%40ss@h?ssl_cert_reqs=none", "rediss://app:p%40ss@h?ssl_cert_reqs=none"),
        ("redis://tok/en@h", "redis://tok%2Fen@h"),
    ],
)
def test_from_url_form_encodes_the_user_info(url, encoded):
    assert parse_redis_address(url).from_url_form == encoded


def test_url_secrets_are_the_password_and_sentinel_password_both_ways():
    url = "redis+sentinel://app:p%40ss@s1/m?sentinelUsername=w&sentinelPassword=sp%2Bw+x"
    assert url_secrets(url) == {"p%40ss", "p@ss", "sp%2Bw+x", "sp+w+x", "sp+w x"}
    assert url_secrets("redis://tok@h") == {"tok"}
    assert url_secrets("redis://h:1/0") == set()
    assert url_secrets(SECRET) == set()
