"""Which Redis a resource talks to: its Secret's URL, or the operator's default."""

from __future__ import annotations

from urllib.parse import urlparse

from ..models.common import SecretKeyRef
from ..storage.kube import KubeApi
from ..storage.redis_jobs import BullRedis


class ConnectionError_(Exception):
    """A connection that cannot be resolved; `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def check_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ConnectionError_(
            "InvalidConnection", "the Redis URL must look like redis://host:port or rediss://..."
        )
    return url


def redacted_url(url: str) -> str:
    """The URL without credentials, path or query: safe in conditions, Events and logs."""
    parsed = urlparse(url)
    host = f"{parsed.hostname}:{parsed.port}" if parsed.port else (parsed.hostname or "")
    return f"{parsed.scheme}://{host}"


class RedisPool:
    """One BullRedis per URL, shared by every resource that uses it."""

    def __init__(self, kube: KubeApi, default_url: str | None, timeout: float) -> None:
        self.kube = kube
        self.default_url = default_url
        self.timeout = timeout
        self._by_url: dict[str, BullRedis] = {}

    async def resolve(self, namespace: str, ref: SecretKeyRef | None) -> BullRedis:
        if ref is None:
            if not self.default_url:
                raise ConnectionError_(
                    "NoConnection",
                    "spec.connection is not set and the operator has no default Redis "
                    "(BULLFLOW_REDIS_URL)",
                )
            return self.get(check_url(self.default_url))
        url = await self.kube.secret_value(namespace, ref.name, ref.key)
        if url is None:
            raise ConnectionError_(
                "ConnectionSecretNotFound",
                f"Secret {namespace}/{ref.name} with key {ref.key!r} was not found",
            )
        return self.get(check_url(url.strip()))

    def get(self, url: str) -> BullRedis:
        if url not in self._by_url:
            self._by_url[url] = BullRedis(url, timeout=self.timeout)
        return self._by_url[url]

    async def close(self) -> None:
        for conn in self._by_url.values():
            await conn.close()
