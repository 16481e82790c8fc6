"""Redis connection URL resolution and validation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from bullflow_worker.errors import UsageError

ALLOWED_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_REDIS_URL_ENVS = ("BULLFLOW_REDIS_URL", "REDIS_URL")
URL_FILE_ENV = "BULLFLOW_REDIS_URL_FILE"


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe for logs/errors)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return "<unparsable URL>"


def validate_redis_url(url: str) -> str:
    """Check that ``url`` is a usable redis://, rediss:// or unix:// URL; return it stripped."""
    url = url.strip()
    if not url:
        raise UsageError("Redis URL is empty")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a non-numeric / out of range port
    except ValueError as exc:
        raise UsageError(f"invalid Redis URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        got = f"{scheme}://" if scheme else "no scheme"
        raise UsageError(
            f"invalid Redis URL {shown!r}: scheme must be redis://, rediss:// or unix:// "
            f"(got {got})"
        )
    if scheme == "unix":
        if not parts.path:
            raise UsageError(f"invalid Redis URL {shown!r}: unix:// URL needs a socket path")
        return url
    if not parts.hostname:
        raise UsageError(f"invalid Redis URL {shown!r}: missing host")
    if port == 0:
        raise UsageError(f"invalid Redis URL {shown!r}: port must be 1-65535")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise UsageError(f"invalid Redis URL {shown!r}: database must be a number, got {db!r}")
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
