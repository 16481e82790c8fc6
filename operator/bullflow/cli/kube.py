"""The plugin's Kubernetes access: the kubeconfig's client, namespace and user, and the Flow
calls the commands make (get, list, patch, create, watch)."""

from __future__ import annotations

import getpass
import math
import os
import time
from collections.abc import Iterator
from typing import Any

from .. import GROUP, VERSION
from ..services.cronflow_policy import CRONFLOW_LABEL

PLURAL = "flows"
WATCH_SECONDS = 60  # one watch request; a new one continues from the last resourceVersion


def _object(value: object) -> dict[str, Any]:
    """A custom object call's answer: the client types it `object`, the API sends a map."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(value)}")
    return value


class FlowGone(Exception):
    """The watched Flow was deleted."""


class Kube:
    """A client from the kubeconfig (file and context as kubectl's flags give them)."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
        self.custom = client.CustomObjectsApi(self.api)
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            active = next((c for c in contexts if c["name"] == context), active)
        self.context: dict[str, Any] = (active or {}).get("context") or {}

    @property
    def namespace(self) -> str:
        return str(self.context.get("namespace") or "default")

    @property
    def user(self) -> str:
        """Who asks: the context's user name, else the login name."""
        if self.context.get("user"):
            return str(self.context["user"])
        return os.environ.get("USER") or getpass.getuser()

    def close(self) -> None:
        self.api.close()

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return _object(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        )

    def get_cronflow(self, namespace: str, name: str) -> dict[str, Any]:
        return _object(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "cronflows", name)
        )

    def runs(self, namespace: str, cronflow: str) -> list[dict[str, Any]]:
        """The Flows a CronFlow created (its label), scheduled and manual."""
        found = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=f"{CRONFLOW_LABEL}={cronflow}"
        )
        return list(_object(found).get("items") or [])

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            found = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            found = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return list(_object(found).get("items") or [])

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return _object(
            self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        )

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return _object(
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        )

    def watch(
        self, namespace: str, name: str, deadline: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """The Flow now, then each new version of it (FlowGone when deleted), until the
        `deadline` (time.monotonic()) if one is given, else endless like `kubectl get -w`."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        flow = self.get(namespace, name)
        yield flow
        version = flow["metadata"]["resourceVersion"]
        while deadline is None or time.monotonic() < deadline:
            seconds = WATCH_SECONDS
            if deadline is not None:
                seconds = max(1, min(seconds, math.ceil(deadline - time.monotonic())))
            try:
                for event in watch.Watch().stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    resource_version=version,
                    timeout_seconds=seconds,
                ):
                    if event["type"] == "DELETED":
                        raise FlowGone(name)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        flow = event["object"]
                        version = flow["metadata"]["resourceVersion"]
                        yield flow
            except ApiException as err:
                if err.status != 410:
                    raise
                # The version is too old to watch from: start again from the object now.
                flow = self.get(namespace, name)
                version = flow["metadata"]["resourceVersion"]
                yield flow
