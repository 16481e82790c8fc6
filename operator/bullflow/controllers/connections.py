"""Which Redis a resource talks to: its Secret's URL, or the operator's default.

Every URL met here is handed to redaction.remember_url, so that its password is masked in
whatever the operator says later. `redacted_url` is re-exported for the controllers."""

from __future__ import annotations

from bullflow_worker.redis_address import RedisAddressError, parse_redis_address

from ..models.common import SecretKeyRef
from ..redaction import redacted_url, remember_url
from ..storage.kube import KubeApi
from ..storage.redis_jobs import BullRedis

__all__ = ["ConnectionUnresolved", "RedisPool", "check_url", "redacted_url", "url_problem"]


class ConnectionUnresolved(Exception):
    """A connection that cannot be resolved; `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


DEFAULT_SOURCE = "the operator's default Redis URL (BULLFLOW_REDIS_URL)"
URL_FORMS = (
    "redis://host:port, rediss://host:port, redis+sentinel://host:26379,.../masterName "
    "or redis+cluster://host:port,..."
)


def url_problem(url: str) -> str | None:
    """What is wrong with a Redis topology URL (bullflow_worker.redis_address), in words that
    repeat nothing of it (a Secret's value may be a password pasted in the wrong key); None if
    it will do."""
    try:
        address = parse_redis_address(url)
    except RedisAddressError as err:
        return err.problem
    if address.socket_path:
        return "is a unix:// socket, which the operator cannot share with its workers' pods"
    return None


def check_url(url: str, source: str = DEFAULT_SOURCE) -> str:
    """`url` if it is a usable Redis URL; else InvalidConnection naming `source` (where the
    URL came from) and what is wrong, never the URL itself."""
    problem = url_problem(url)
    if problem:
        raise ConnectionUnresolved("InvalidConnection", f"{source} {problem}{_hint(problem)}")
    return url


def _hint(problem: str) -> str:
    """The forms a URL takes, unless the problem already names them or says how to fix it."""
    if ": " in problem or problem.startswith("has a scheme"):
        return ""
    return f": it must look like {URL_FORMS}"


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
        return self.get(check_url(url, f"the key {ref.key!r} of Secret {namespace}/{ref.name}"))

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
