"""Which Redis a resource talks to: its Secret's URL, or the operator's default.

Every URL met here is handed to redaction.remember_url, so that its password is masked in
whatever the operator says later. `redacted_url` is re-exported for the controllers."""

from __future__ import annotations

from urllib.parse import urlparse

from ..models.common import SecretKeyRef
from ..redaction import redacted_url, remember_url
from ..storage.kube import KubeApi
from ..storage.redis_jobs import BullRedis

__all__ = ["ConnectionUnresolved", "RedisPool", "check_url", "redacted_url"]


class ConnectionUnresolved(Exception):
    """A connection that cannot be resolved; `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def check_url(url: str) -> str:
    try:
        parsed = urlparse(url)
        valid = parsed.scheme in ("redis", "rediss") and bool(parsed.hostname)
    except ValueError:  # e.g. a bad IPv6 literal; its message is not worth the risk of a leak
        valid = False
    if not valid:
        raise ConnectionUnresolved(
            "InvalidConnection", "the Redis URL must look like redis://host:port or rediss://..."
        )
    return url


class RedisPool:
    """One BullRedis per URL, shared by every resource that uses it."""

    def __init__(self, kube: KubeApi, default_url: str | None, timeout: float) -> None:
        self.kube = kube
        self.default_url = default_url
        if default_url:
            remember_url(default_url)
        self.timeout = timeout
        self._by_url: dict[str, BullRedis] = {}

    async def resolve(self, namespace: str, ref: SecretKeyRef | None) -> BullRedis:
        if ref is None:
            if not self.default_url:
                raise ConnectionUnresolved(
                    "NoConnection",
                    "spec.connection is not set and the operator has no default Redis "
                    "(BULLFLOW_REDIS_URL)",
                )
            return self.get(check_url(self.default_url))
        url = await self.kube.secret_value(namespace, ref.name, ref.key)
        if url is None:
            raise ConnectionUnresolved(
                "ConnectionSecretNotFound",
                f"Secret {namespace}/{ref.name} with key {ref.key!r} was not found",
            )
        url = url.strip()
        remember_url(url)
        return self.get(check_url(url))

    def get(self, url: str) -> BullRedis:
        if url not in self._by_url:
            # Before anything can fail with it: from now on no log line, Event or condition
            # repeats its password (see redaction.py).
            remember_url(url)
            self._by_url[url] = BullRedis(url, timeout=self.timeout)
        return self._by_url[url]

    async def close(self) -> None:
        for conn in self._by_url.values():
            await conn.close()
