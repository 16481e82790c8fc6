"""Flows with a templateRef: expand the live FlowTemplate once, record it in the Flow's status
before anything is submitted, and re-reconcile the Flows that wait for a template (missing,
invalid, or not accepting their arguments) when that template is created or changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from .. import GROUP, VERSION
from ..logs import about
from ..models.flow import FlowSpec, FlowStatus
from ..services.flow_from_template import record, recorded_spec
from ..services.template_expansion import TemplateError
from ..storage.kube import KubeApi, ObjectRef
from .flow_status import FlowStatusWriter

log = logging.getLogger(__name__)
TEMPLATE_PLURAL = "flowtemplates"
Reconcile = Callable[[Any], Awaitable[None]]


class FlowTemplates:
    def __init__(self, kube: KubeApi, statuses: FlowStatusWriter, max_nodes: int) -> None:
        self.kube = kube
        self.statuses = statuses
        self.max_nodes = max_nodes
        # (namespace, template name) -> {flow uid: flow name}: Flows to reconcile again when
        # that template appears or changes.
        self.waiting: dict[tuple[str, str], dict[str, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def effective_spec(
        self,
        ref: ObjectRef,
        spec: FlowSpec,
        status: FlowStatus,
        generation: int | None,
        retry: int,
        backoff: Callable[[int], float],
    ) -> tuple[FlowSpec, FlowStatus] | None:
        """The spec the Flow runs and its status (with the template recorded, written), or
        None once a problem is reported (Ready=False). Raises kopf.TemporaryError while the
        template does not exist (retried with backoff, and at once when it is created)."""
        try:
            known = recorded_spec(spec, status)
        except TemplateError as err:
            await self._report(ref, status, generation, err.reason, err.message)
            return None
        if known is not None:
            return known, status
        assert spec.template_ref is not None
        name = spec.template_ref.name
        template = await self._get(ref.namespace, name)
        if template is None:
            self._wait(ref, name)
            message = f"FlowTemplate {name} does not exist in namespace {ref.namespace}"
            await self._report(ref, status, generation, "TemplateNotFound", message)
            raise kopf.TemporaryError(message, delay=backoff(retry))
        try:
            expanded, recorded = record(template, spec, self.max_nodes)
        except TemplateError as err:
            self._wait(ref, name)
            await self._report(ref, status, generation, err.reason, f"{name}: {err.message}")
            return None
        self._forget(ref.uid)
        status = status.model_copy(deep=True)
        status.template = recorded
        # Recorded before the submission: a re-submission after a crash expands the same tree
        # even if the template was edited meanwhile.
        if not await self.statuses.write(ref, status, "template"):
            return None  # the Flow is gone
        return expanded, status

    async def _report(
        self, ref: ObjectRef, status: FlowStatus, generation: int | None, reason: str, message: str
    ) -> None:
        ready = next((c for c in status.conditions if c.type == "Ready"), None)
        if ready and ready.reason == reason and ready.message == message:
            return  # reported already
        await self.statuses.not_ready(ref, status, generation, reason, message)
        await self.kube.event(ref, "Warning", reason, message)

    async def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            template: dict[str, Any] = await self.kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, TEMPLATE_PLURAL, name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return template

    def _wait(self, ref: ObjectRef, template: str) -> None:
        self.waiting.setdefault((ref.namespace, template), {})[ref.uid] = ref.name

    def _forget(self, uid: str) -> None:
        for key in [k for k, flows in self.waiting.items() if flows.pop(uid, None) and not flows]:
            del self.waiting[key]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self, uid: str) -> None:
        """The Flow was deleted."""
        self._forget(uid)

    def template_changed(self, namespace: str, name: str, reconcile: Reconcile) -> None:
        """A FlowTemplate was created or changed: reconcile the Flows waiting for it, each
        from a fresh read (their status changed since they were seen)."""
        for uid, flow in self.waiting.pop((namespace, name), {}).items():
            task = asyncio.create_task(self._reconcile(namespace, flow, uid, reconcile))
            self._tasks.add(task)  # held until done: the loop keeps weak references only
            task.add_done_callback(self._tasks.discard)

    async def _reconcile(self, namespace: str, name: str, uid: str, reconcile: Reconcile) -> None:
        try:
            body = await self.kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "flows", name
            )
        except ApiException as err:
            if err.status != 404:
                log.warning(
                    "flow %s/%s: cannot read it: %s",
                    namespace,
                    name,
                    err.reason,
                    extra=about(namespace, name),
                )
            return
        if body["metadata"]["uid"] != uid:
            return
        try:
            await reconcile(body)
        except kopf.TemporaryError:
            return  # still waiting: registered again by the reconcile
        except Exception:  # the flow's own kopf retries go on; this poke only hastens them
            log.exception(
                "flow %s/%s: reconcile after its template changed failed",
                namespace,
                name,
                extra=about(namespace, name),
            )
