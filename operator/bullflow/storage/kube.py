"""Kubernetes API adapter (kubernetes_asyncio): status patches, Events, Secrets, deletes."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from .. import GROUP, VERSION
from ..redaction import scrub
from ..services.conditions import now_rfc3339

COMPONENT = "bullflow-operator"


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    plural: str
    namespace: str
    name: str
    uid: str


class KubeApi:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    @classmethod
    async def connect(cls) -> KubeApi:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            config.load_incluster_config()
        else:
            await config.load_kube_config()
        api = client.ApiClient()
        # kubernetes_asyncio opens its aiohttp session with trust_env=True, which makes every
        # request look up proxy variables and ~/.netrc in a thread, a visible share of the
        # operator's CPU (bench/). The API server is reached directly, as kopf's session does.
        session = getattr(api.rest_client, "pool_manager", None)
        if session is not None and hasattr(session, "_trust_env"):
            session._trust_env = False
        return cls(api)

    async def close(self) -> None:
        await self.api_client.close()

    async def patch_status(self, ref: ObjectRef, status: dict[str, Any]) -> bool:
        """Replace the whole status (a JSON patch, so stale map keys never linger).

        False if the object is gone.
        """
        patch = [{"op": "add", "path": "/status", "value": status}]
        return await self._json_patch(ref, patch, status=True)

    async def add_finalizer(self, ref: ObjectRef, finalizer: str, has_list: bool) -> bool:
        """Append a finalizer to this very object (same uid). False if it is gone, was replaced,
        or is already being deleted (the API server refuses new finalizers then)."""
        add = (
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}
            if has_list
            else {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}
        )
        patch = [{"op": "test", "path": "/metadata/uid", "value": ref.uid}, add]
        try:
            return await self._json_patch(ref, patch, status=False)
        except ApiException as err:
            if err.status in (409, 422):
                return False
            raise

    async def _json_patch(self, ref: ObjectRef, patch: list[dict[str, Any]], status: bool) -> bool:
        call = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        # The reply is the whole object (for a large Flow, megabytes of spec) and nothing here
        # needs it: read it raw instead of parsing JSON into dicts on every write.
        reply: Any = await call(  # type: ignore[call-arg]
            GROUP,
            VERSION,
            ref.namespace,
            ref.plural,
            ref.name,
            patch,
            _content_type="application/json-patch+json",
            _preload_content=False,
        )
        return await _check_raw(reply, tolerated=(404,)) != 404

    async def exists(self, ref: ObjectRef) -> bool:
        """Whether this very object (same uid) still exists."""
        try:
            obj = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, ref.namespace, ref.plural, ref.name
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return bool(obj["metadata"]["uid"] == ref.uid)

    async def delete(self, ref: ObjectRef) -> None:
        try:
            await self.custom.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                ref.namespace,
                ref.plural,
                ref.name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=ref.uid)),
            )
        except ApiException as err:
            if err.status not in (404, 409):
                raise

    async def list_custom(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        reply = await self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        items: list[dict[str, Any]] = reply.get("items", [])
        return items

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value, or None if the Secret or key does not exist."""
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        return base64.b64decode(raw).decode() if raw is not None else None

    async def event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the object, as `kubectl describe` shows them."""
        now = now_rfc3339()
        # A plain dict and a raw reply: the client's V1Event models (serialising, then parsing
        # the reply's timestamps back with dateutil) cost more CPU than the request itself.
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "type": type_,
            "reason": reason,
            # Messages quote Redis errors; no Event may repeat a credential (redaction.py).
            "message": scrub(message)[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": os.environ.get("HOSTNAME", "local"),
        }
        create: Any = self.core.create_namespaced_event  # it takes a dict body too
        reply = await create(ref.namespace, body, _preload_content=False)
        await _check_raw(reply, tolerated=(403, 404, 409))


async def _check_raw(reply: Any, tolerated: tuple[int, ...] = ()) -> int:
    """Status of a raw (`_preload_content=False`) reply; raises ApiException on an error that is
    not tolerated. The body is never parsed."""
    try:
        # Read to the end even when unused: a released, unread reply closes its connection
        # (a new TLS handshake for the next request).
        data = await reply.read()
        if reply.status not in tolerated and not 200 <= reply.status <= 299:
            err = ApiException(status=reply.status, reason=reply.reason)
            err.body = data.decode(errors="replace")
            raise err
        return int(reply.status)
    finally:
        reply.release()


def is_too_large(err: BaseException) -> bool:
    """The API server or etcd refused a write for its size ("etcdserver: request is too large",
    413 Request Entity Too Large): the same write will never pass."""
    if not isinstance(err, ApiException):
        return False
    return err.status == 413 or "too large" in f"{err.reason} {_text(err.body)}".lower()


def describe_api_error(err: BaseException) -> str:
    """One line for a log: the status and the API server's message, not the whole reply."""
    if isinstance(err, ApiException):
        return f"{err.status} {err.reason}: {_text(err.body)[:300]}"
    return f"{type(err).__name__}: {scrub(str(err))}"


def _text(body: object) -> str:
    if isinstance(body, bytes):
        return body.decode(errors="replace")
    return "" if body is None else str(body)
