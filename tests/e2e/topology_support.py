"""Helpers for the e2e tests on Redis Cluster and Sentinel: connection Secrets, prefixes,
conditions, and what Redis holds across every node of a topology."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from kubernetes import client

from tests.harness.redis_topologies import RedisClusterTopology, RedisSentinelTopology, command

Topology = RedisClusterTopology | RedisSentinelTopology
SECRET_NAME, SECRET_KEY = "redis-topology", "url"


def prefix_for(topology: Topology) -> str:
    """A unique BullMQ prefix; hash-tagged on a Cluster (a flow's keys must share a slot)."""
    base = f"bt{uuid.uuid4().hex[:8]}"
    return f"{{{base}}}" if isinstance(topology, RedisClusterTopology) else base


def put_secret(kube_client: Any, namespace: str, value: str) -> dict[str, str]:
    """Creates (or replaces) the connection Secret; returns the Flow's `spec.connection`."""
    core = client.CoreV1Api(kube_client)
    body = {
        "metadata": {"name": SECRET_NAME},
        "data": {SECRET_KEY: base64.b64encode(value.encode()).decode()},
    }
    try:
        core.create_namespaced_secret(namespace, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(SECRET_NAME, namespace, body)
    return {"name": SECRET_NAME, "key": SECRET_KEY}


def conditions(flow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (flow.get("status") or {}).get("conditions") or []}


def ready_reason(flow: dict[str, Any]) -> str | None:
    return conditions(flow).get("Ready", {}).get("reason")


def data_masters(topology: Topology) -> list[int]:
    """The ports of the nodes that accept writes (every Cluster master; the Sentinel master)."""
    if isinstance(topology, RedisClusterTopology):
        return sorted({r.master for r in topology.slot_ranges()})
    return [topology.master().port]


def keys_matching(topology: Topology, pattern: str) -> list[str]:
    """Every key matching `pattern` on every master (SCAN on each node, no redirection)."""
    return [
        k for p in data_masters(topology) for k in keys_matching_on(p, topology.password, pattern)
    ]


def delete_keys(topology: Topology, pattern: str) -> None:
    """Best-effort cleanup of a test's keys on every master."""
    for port in data_masters(topology):
        for key in keys_matching_on(port, topology.password, pattern):
            command(port, topology.password, "DEL", key)  # one by one: no cross-slot DEL


def keys_matching_on(port: int, password: str | None, pattern: str) -> list[str]:
    found: list[str] = []
    cursor = "0"
    while True:
        cursor, batch = command(port, password, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        found += batch
        if str(cursor) == "0":
            return found


def operator_identity(operator: Any) -> tuple[int | None, int]:
    """(pid, starts) of the operator process: equal before and after = no restart, no crash."""
    return (operator.proc.pid if operator.proc else None), operator.starts


def topology_client(url: str) -> Any:
    """A blocking client on any topology URL (the worker's factory), decoded replies."""
    from bullflow_worker.redis_address import parse_redis_address
    from bullflow_worker.redis_clients import sync_client

    return sync_client(parse_redis_address(url), decode_responses=True, socket_timeout=10)
