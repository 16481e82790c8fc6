"""The Redis topology URL: one string that says which Redis to use, standalone, Sentinel or Cluster.

    redis://[[user]:password@]host[:port][/db]            (rediss:// for TLS; unix:///path too)
    redis+sentinel://[[user]:password@]h1[:p1][,h2[:p2]...]/<masterName>[/<db>]
        [?sentinelUsername=U&sentinelPassword=P]          (rediss+sentinel:// for TLS)
    redis+cluster://[[user]:password@]h1[:p1][,h2[:p2]...] (rediss+cluster:// for TLS)

user/password are the data nodes' credentials; the sentinels' own come from the query, as
ioredis keeps `password` and `sentinelPassword` apart. Pure: parsing only, no I/O.

The user-info is cut at the last "@" before the query (an unencoded "@", "/" or "?" in a
password is common in pasted Secrets); the same cut is used by `redact_redis_url`, so that
what is parsed as the password is what is masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, unquote_plus

Topology = Literal["standalone", "sentinel", "cluster"]

MASK = "***"
DEFAULT_PORTS: dict[Topology, int] = {"standalone": 6379, "sentinel": 26379, "cluster": 6379}
# scheme -> (topology, TLS)
SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
SCHEME_LIST = "redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, " + (
    "redis+cluster:// or rediss+cluster://"
)
SENTINEL_OPTIONS = ("sentinelUsername", "sentinelPassword")
# Passed to redis-py as they are, for a TLS setup with a private CA.
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs")
# redact_redis_url masks the value of every query key that looks like a secret (pas, pw,
# secret, auth): sentinelPassword, redis-py's password=, and their misspellings, which
# parse_redis_address refuses by name while the CLI shows the redacted URL.
MASTER_NAME_HINT = "add the master name as the path: redis+sentinel://host:26379/mymaster"
# Also used on free text (log lines), hence no whitespace in a key or value.
SECRET_QUERY_VALUE = re.compile(
    r"(?P<key>[?&][^=&#?\s]*(?:pas|pw|secret|auth)[^=&#?\s]*=)(?P<value>[^&#\s]*)",
    re.IGNORECASE,
)


class RedisAddressError(ValueError):
    """A Redis URL that cannot be used. `problem` is a phrase to follow the URL's source
    ("the key 'url' of Secret ns/conn" + " has no host"); it never repeats the password nor
    any other part of the URL that could be one."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"the Redis URL {problem}")
        self.problem = problem


@dataclass(frozen=True)
class RedisAddress:
    """A parsed Redis URL. For standalone, `nodes` holds the one host (empty for unix://,
    whose path is `socket_path`); `url` is the original, which redis-py's from_url reads for
    standalone so that its query options keep working."""

    topology: Topology
    nodes: tuple[tuple[str, int], ...]
    url: str = field(repr=False)
    master_name: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    socket_path: str | None = None
    tls_options: tuple[tuple[str, str], ...] = ()

    @property
    def redacted(self) -> str:
        return redact_redis_url(self.url)

    @property
    def from_url_form(self) -> str:
        """`url` with its user-info percent-encoded, for redis-py's from_url, which splits an
        unencoded "/", "?" or "@" in a password elsewhere than this parser does."""
        scheme, _, rest = self.url.partition("://")
        userinfo, after = _split_userinfo(rest)
        if userinfo is None:
            return self.url
        user = quote(self.username or "", safe="")
        if self.username is None and ":" not in userinfo:
            encoded = quote(self.password or "", safe="")
        else:
            encoded = f"{user}:{quote(self.password or '', safe='')}"
        return f"{scheme}://{encoded}@{after}"


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """(user-info or None, the rest) of what follows `scheme://`."""
    at = rest.rfind("@")
    query = rest.find("?")
    if at != -1 and query != -1 and query < at and "=" in rest[query:at]:
        # The last "@" is inside a query value: the user-info ends before the query.
        at = rest.rfind("@", 0, query)
    if at == -1:
        return None, rest
    return rest[:at], rest[at + 1 :]


def redact_redis_url(url: str) -> str:
    """`url` with its password and sentinelPassword (and a `password=` option) replaced by
    ``***``: safe for logs and error messages, also for a URL that does not parse."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # not a URL: maybe a password pasted in the wrong place
        return MASK
    userinfo, after = _split_userinfo(rest)
    if userinfo is not None:
        user, has_password, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}" if has_password else MASK
        rest = f"{userinfo}@{after}"
    return f"{scheme}://" + SECRET_QUERY_VALUE.sub(lambda m: m.group("key") + MASK, rest)


def url_secrets(url: str) -> set[str]:
    """Every credential in `url`, as written and percent-decoded: the user-info's password (a
    user-info without ":" as a whole, as redis-py reads it) and the values of the query keys
    that redact_redis_url masks. For a log scrubber that masks them wherever they appear."""
    _, sep, rest = url.strip().partition("://")
    if not sep:
        return set()
    found: set[str] = set()
    userinfo, _ = _split_userinfo(rest)
    if userinfo:
        _, has_password, password = userinfo.partition(":")
        found.add(password if has_password else userinfo)
    found.update(m.group("value") for m in SECRET_QUERY_VALUE.finditer(rest))
    found.discard("")
    return found | {unquote(value) for value in found} | {unquote_plus(v) for v in found}


def _parse_node(text: str, default_port: int) -> tuple[str, int]:
    if not text:
        raise RedisAddressError("has no host")
    if text.startswith("["):
        host, bracket, port_text = text[1:].partition("]")
        if not bracket or not host or (port_text and not port_text.startswith(":")):
            raise RedisAddressError("cannot be parsed (a bad host or port)")
        port_text = port_text[1:]
    else:
        host, _, port_text = text.partition(":")
        if not host:
            raise RedisAddressError("has no host")
    if any(c in host for c in " []@\t\n"):
        raise RedisAddressError("cannot be parsed (a bad host or port)")
    if not port_text:
        return host, default_port
    if not port_text.isdigit():
        raise RedisAddressError("cannot be parsed (a bad host or port)")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise RedisAddressError("has a port outside 1-65535")
    return host, port


def _parse_db(text: str) -> int:
    if not text.isdigit():
        raise RedisAddressError("has a database (the path) that is not a number")
    return int(text)


def _options(query: str, topology: Topology, tls: bool) -> dict[str, str]:
    allowed = (SENTINEL_OPTIONS if topology == "sentinel" else ()) + (TLS_OPTIONS if tls else ())
    options = dict(parse_qsl(query, keep_blank_values=True))
    for key in options:
        if key not in allowed:
            takes = " and ".join(allowed) if allowed else "no options"
            raise RedisAddressError(
                f"has an unknown option {key!r} (a {topology} URL takes {takes})"
            )
    return options


def _split_hosts_path(after: str) -> tuple[str, str, str]:
    """(hosts, path without its leading "/", query) of what follows the user-info."""
    after = after.partition("#")[0]
    before_query, _, query = after.partition("?")
    hosts, slash, path = before_query.partition("/")
    return hosts, path if slash else "", query


def parse_redis_address(url: str) -> RedisAddress:
    """Parse a Redis topology URL (see the module docstring); raise RedisAddressError.

    Long because: one pass over the URL's parts in order, each with its own error."""
    url = url.strip()
    if not url:
        raise RedisAddressError("is empty")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise RedisAddressError("is not a URL (no scheme://)")
    if scheme.lower() not in SCHEMES:
        raise RedisAddressError(f"has a scheme other than {SCHEME_LIST}")
    topology, tls = SCHEMES[scheme.lower()]
    userinfo, after = _split_userinfo(rest)
    username = password = None
    if userinfo is not None:
        user, has_password, secret = userinfo.partition(":")
        if has_password:
            username, password = unquote(user) or None, unquote(secret)
        else:  # redis-py reads a lone user-info as the password
            password = unquote(user)
    hosts, path, query = _split_hosts_path(after)
    if scheme.lower() == "unix":
        if hosts or not path:
            raise RedisAddressError("needs a socket path: unix:///path/to/redis.sock")
        return RedisAddress(
            "standalone", (), url, username=username, password=password, socket_path="/" + path
        )
    default_port = DEFAULT_PORTS[topology]
    nodes = tuple(_parse_node(node, default_port) for node in hosts.split(","))
    options: dict[str, str] = {}
    if topology != "standalone":
        options = _options(query, topology, tls)
    master_name, db = None, 0
    if topology == "standalone":
        if len(nodes) > 1:
            raise RedisAddressError(
                "lists several hosts: use redis+sentinel:// or redis+cluster:// for more than one"
            )
        if path:
            db = _parse_db(path)
    elif topology == "sentinel":
        name, _, db_text = path.partition("/")
        if not name:
            raise RedisAddressError(f"has no Sentinel master name: {MASTER_NAME_HINT}")
        master_name = unquote(name)
        if db_text:
            db = _parse_db(db_text)
    elif path:
        raise RedisAddressError("names a database, but Redis Cluster has only database 0")
    return RedisAddress(
        topology,
        nodes,
        url,
        master_name=master_name,
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinelUsername") or None,
        sentinel_password=options.get("sentinelPassword"),
        tls=tls,
        tls_options=tuple((k, v) for k, v in options.items() if k in TLS_OPTIONS),
    )
