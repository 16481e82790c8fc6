"""Why Redis could not be used, as a condition reason and message. Pure: no I/O.

Every failure to reach Redis used to read `RedisUnavailable`, which sends a user looking at the
network when the Secret holds a wrong password or a wrong Sentinel master name: two mistakes that
waiting never fixes. They get reasons of their own:

- `RedisAuthFailed`: a data node (or, through Sentinel, the sentinels) refused the credentials.
  redis-py raises AuthenticationError (a ConnectionError) for a data node; a sentinel's refusal
  ends inside MasterNotFoundError's list of what each sentinel said.
- `RedisMasterNotFound`: the sentinels answer but none watches a master of that name. A known
  name that no sentinel reports up (the seconds of a failover before a replica is promoted)
  is MasterFailingOver, a wait: `RedisUnavailable`, so the Flow waits in RedisWait and goes
  on within a second of the promotion instead of kopf's growing backoff.
- `RedisUnavailable`: anything else (nobody answers, timeouts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis.asyncio.sentinel
import redis.sentinel
from redis.exceptions import AuthenticationError, RedisClusterException

from bullflow_worker.redis_address import RedisAddressError, parse_redis_address
from bullflow_worker.redis_clients import MasterFailingOver

from ..redaction import redacted_url, scrub

REDIS_UNAVAILABLE = "RedisUnavailable"
REDIS_AUTH_FAILED = "RedisAuthFailed"
REDIS_MASTER_NOT_FOUND = "RedisMasterNotFound"
MASTER_NOT_FOUND_ERRORS = (
    redis.sentinel.MasterNotFoundError,
    redis.asyncio.sentinel.MasterNotFoundError,
)
# How a refused or missing AUTH reads once redis-py has wrapped it in another error's text
# (lower case): "AuthenticationError", "WRONGPASS", "NOAUTH Authentication required", "HELLO
# must be called with the client already authenticated", "invalid username-password pair".
AUTH_MARKERS = ("authenticat", "wrongpass", "noauth", "invalid username-password")
# MasterNotFoundError lists each failed sentinel as "<its client's repr> - <error>".
_SENTINEL_ERROR = re.compile(r">+ - (?P<error>.+?)(?=, <|$)")


@dataclass(frozen=True)
class RedisFailure:
    reason: str
    message: str


def _sentinel_hosts(url: str) -> tuple[str, str | None]:
    """("h1:p1,h2:p2", master name) of a Sentinel URL; ("", None) for any other."""
    try:
        address = parse_redis_address(url)
    except RedisAddressError:
        return "", None
    if address.topology != "sentinel":
        return "", None
    return ",".join(f"{h}:{p}" for h, p in address.nodes), address.master_name


def _auth_refused(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in AUTH_MARKERS)


def _what_sentinels_said(err: BaseException) -> str:
    """The distinct errors of the sentinels that failed, without their clients' long reprs."""
    errors = dict.fromkeys(m.group("error") for m in _SENTINEL_ERROR.finditer(str(err)))
    return "; ".join(errors)


def classify_redis_failure(err: BaseException, url: str) -> RedisFailure:
    """The condition for a Redis error met while using `url` (scrubbed of any credential)."""
    detail = scrub(str(err))
    where = redacted_url(url)
    sentinels, master_name = _sentinel_hosts(url)
    if isinstance(err, MasterFailingOver):
        return RedisFailure(REDIS_UNAVAILABLE, f"{detail} (sentinels at {sentinels})")
    if isinstance(err, MASTER_NOT_FOUND_ERRORS) and master_name is not None:
        said = scrub(_what_sentinels_said(err))
        if _auth_refused(said):
            return RedisFailure(
                REDIS_AUTH_FAILED,
                f"the sentinels at {sentinels} refused their credentials (sentinelUsername and "
                "sentinelPassword in the URL's query; a Sentinel that shares the Redis password "
                f"needs it there too): {said}",
            )
        if not said:  # every sentinel answered; none watches such a master
            return RedisFailure(
                REDIS_MASTER_NOT_FOUND,
                f"no sentinel at {sentinels} watches a master named {master_name!r}: check the "
                "master name, the path of redis+sentinel://host:26379/<master>",
            )
        return RedisFailure(
            REDIS_UNAVAILABLE, f"no sentinel at {sentinels} gave the master's address: {said}"
        )
    if isinstance(err, AuthenticationError) or (
        isinstance(err, RedisClusterException) and _auth_refused(str(err))
    ):
        return RedisFailure(
            REDIS_AUTH_FAILED,
            f"Redis at {where} refused the credentials of the connection (the user and password "
            f"in the URL): {detail}",
        )
    return RedisFailure(REDIS_UNAVAILABLE, f"Redis at {where} is unreachable: {detail}")
