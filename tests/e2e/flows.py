"""Apply Flow manifests and wait on their status through the real API server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bullflow import GROUP, VERSION

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, prefix: str) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    doc["spec"]["prefix"] = prefix
    return doc


def queues_of(doc: dict[str, Any]) -> set[str]:
    spec = doc["spec"]
    stack = [spec["root"]] if "root" in spec else list(spec["roots"])
    queues = set()
    while stack:
        node = stack.pop()
        queues.add(node["queueName"])
        stack.extend(node.get("children", []))
    return queues


class BullflowObjects:
    """bullflow objects of one kind in one namespace: applied with kubectl, read via the API."""

    plural = ""

    def __init__(self, api: client.ApiClient, kubectl: Any, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.kubectl = kubectl
        self.namespace = namespace

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.kubectl("apply", "-n", self.namespace, "-f", "-", input=yaml.safe_dump(doc))
        return self.get(doc["metadata"]["name"])

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, self.plural, name
        )


class Flows(BullflowObjects):
    plural = "flows"

    def wait(
        self, name: str, phases: tuple[str, ...] = ("Completed", "Failed"), timeout: float = 60
    ) -> dict[str, Any]:
        return self.wait_for(
            name,
            lambda f: (f.get("status") or {}).get("phase") in phases,
            f"a phase in {phases}",
            timeout,
        )

    def wait_at_rest(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """Finished, and no job left that moves by itself: a flow a failed child ended may
        still have a sibling running, whose end the status shows later."""
        return self.wait_for(name, at_rest, "finished with every job at rest", timeout)

    def wait_for(self, name: str, predicate: Any, what: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        flow: dict[str, Any] = {}
        while time.monotonic() < deadline:
            flow = self.get(name)
            if predicate(flow):
                return flow
            time.sleep(0.2)
        raise AssertionError(f"flow {name}: {what} not seen after {timeout}s: {flow.get('status')}")


MOVING_STATES = ("waiting", "delayed", "prioritized", "active")


def at_rest(flow: dict[str, Any]) -> bool:
    status = flow.get("status") or {}
    counts = status.get("counts") or {}
    finished = status.get("phase") in ("Completed", "Failed", "Stopped")
    return finished and not any(counts.get(state) for state in MOVING_STATES)


def condition(flow: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in flow["status"]["conditions"] if c["type"] == type_)


def nodes_by_name(flow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in flow["status"]["nodes"]}
