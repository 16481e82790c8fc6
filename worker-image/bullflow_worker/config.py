"""Redis connection URL resolution and validation."""

from __future__ import annotations

import os
from collections.abc import Mapping

from bullflow_worker.errors import UsageError
from bullflow_worker.redis_address import RedisAddressError, parse_redis_address, redact_redis_url

DEFAULT_REDIS_URL_ENVS = ("BULLFLOW_REDIS_URL", "REDIS_URL")
URL_FILE_ENV = "BULLFLOW_REDIS_URL_FILE"


def redact_url(url: str) -> str:
    """Return ``url`` with any password (also a Sentinel's) replaced by ``***``."""
    return redact_redis_url(url)


def validate_redis_url(url: str) -> str:
    """Check that ``url`` is a usable Redis topology URL (redis://, rediss://, unix://,
    redis+sentinel://, redis+cluster://, see redis_address.py); return it stripped."""
    url = url.strip()
    if not url:
        raise UsageError("Redis URL is empty")
    try:
        parse_redis_address(url)
    except RedisAddressError as exc:
        raise UsageError(f"invalid Redis URL {redact_url(url)!r}: {exc.problem}") from None
    return url


def resolve_redis_url(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    """Pick the Redis URL: --redis-url, then $BULLFLOW_REDIS_URL_FILE, $BULLFLOW_REDIS_URL,
    $REDIS_URL. The file variant is for a URL mounted from a Kubernetes Secret."""
    env = os.environ if env is None else env
    if cli_value:
        return validate_redis_url(cli_value)
    path = env.get(URL_FILE_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                content = fh.read()
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise UsageError(f"cannot read {URL_FILE_ENV} file {path!r}: {reason}") from None
        if not content.strip():
            raise UsageError(f"{URL_FILE_ENV} file {path!r} is empty")
        return validate_redis_url(content)
    for name in DEFAULT_REDIS_URL_ENVS:
        value = env.get(name)
        if value:
            return validate_redis_url(value)
    raise UsageError(
        "no Redis URL: pass --redis-url or set BULLFLOW_REDIS_URL, REDIS_URL "
        "or BULLFLOW_REDIS_URL_FILE"
    )
