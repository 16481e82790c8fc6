"""Kubernetes API adapter (kubernetes_asyncio): status patches, Events, Secrets, deletes."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from .. import GROUP, VERSION

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
        # request look up proxy variables and ~/.netrc in a thread (~10% of the operator's CPU
        # in bench/). The API server is reached directly, as kopf's own session does.
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
        try:
            await self.custom.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                GROUP,
                VERSION,
                ref.namespace,
                ref.plural,
                ref.name,
                [{"op": "add", "path": "/status", "value": status}],
                _content_type="application/json-patch+json",
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

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
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{ref.name}."),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=ref.kind,
                name=ref.name,
                namespace=ref.namespace,
                uid=ref.uid,
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=os.environ.get("HOSTNAME", "local"),
        )
        try:
            await self.core.create_namespaced_event(ref.namespace, body)
        except ApiException as err:
            if err.status not in (403, 404, 409):
                raise
