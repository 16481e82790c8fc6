"""11. Redis topologies: the same submission burst and the same 10,000-child Flow on a
standalone Redis and on a Redis Cluster (3 masters + 3 replicas, tests/harness), in one run
with one operator, the topologies alternating run by run.

Every Flow names its Redis through `spec.connection` (a Secret per namespace), on both sides,
so the only difference is the topology: on the Cluster the prefix is hash-tagged (`{bt..}`),
so each Flow's keys live on the one master owning that slot, and the operator's client follows
the slot map. Measured per topology: the burst's keep-pace ratio (every Flow Submitted / the
creates' wall time) and flows/s; the large Flow's create → Submitted seen, then Node.js workers
(ioredis Cluster on the Cluster) → Completed. Rows give the Cluster's numbers with the
standalone's as the ratio's denominator."""

from __future__ import annotations

import base64
import time
from typing import Any

from tests.harness.redis_topologies import RedisClusterTopology

from .common import create_flows, flow_doc, short_id, tree
from .env import BenchEnv, FlowWatcher, kube_clients
from .params import Params
from .rows import row
from .stats import over_runs

TOPOLOGIES = ("standalone", "cluster")
SECRET = {"name": "bench-redis", "key": "url"}


async def redis_topologies(env: BenchEnv, prm: Params) -> dict[str, Any]:
    """`repeats` rounds; each runs the burst and the large Flow on both topologies."""
    cluster = RedisClusterTopology(env.workdir / "redis-cluster")
    cluster.start()
    urls = {"standalone": env.redis_url, "cluster": cluster.url}
    try:
        made = env.namespaces("topo", 2 * prm.repeats)  # the operator watches bench-topo-*
        spaces = {t: made[i :: len(TOPOLOGIES)] for i, t in enumerate(TOPOLOGIES)}
        env.start_operator("topo")
        runs: list[dict[str, Any]] = []
        async with kube_clients(env.cluster.kubeconfig) as (custom, core):
            for r in range(prm.repeats):
                order = TOPOLOGIES if r % 2 == 0 else tuple(reversed(TOPOLOGIES))
                for topology in order:
                    ns = spaces[topology][r]
                    await put_secret(core, ns, urls[topology])
                    runs.append(await one_run(env, prm, custom, ns, topology, urls[topology], r))
        env.stop_operator()
    finally:
        cluster.stop()
    metrics = {t: summary([x for x in runs if x["topology"] == t]) for t in TOPOLOGIES}
    return {
        "status": "ok",
        "params": {
            "flows": prm.sub_flows,
            "concurrency": prm.concurrency,
            "children": prm.large_children,
            "repeats": prm.repeats,
        },
        "runs": runs,
        "metrics": metrics,
        "rows": rows(prm, metrics),
        "notes": notes(),
    }


async def put_secret(core: Any, namespace: str, url: str) -> None:
    body = {
        "metadata": {"name": SECRET["name"]},
        "data": {SECRET["key"]: base64.b64encode(url.encode()).decode()},
    }
    await core.create_namespaced_secret(namespace, body)


def prefix_for(topology: str, label: str) -> str:
    base = f"b{label}{short_id()}"
    return f"{{{base}}}" if topology == "cluster" else base


def on_secret(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"]["connection"] = dict(SECRET)
    return doc


async def one_run(
    env: BenchEnv, prm: Params, custom: Any, ns: str, topology: str, url: str, r: int
) -> dict[str, Any]:
    """The burst (no workers: submission alone), then the large Flow run by Node.js workers."""
    watcher = await FlowWatcher(custom, ns).start()
    try:
        burst_prefix = prefix_for(topology, "s")
        names = [f"f{i:05d}" for i in range(prm.sub_flows)]
        docs = [on_secret(flow_doc(n, burst_prefix, tree("parent", "child", 2))) for n in names]
        created = await create_flows(custom, ns, docs, prm.concurrency)
        first = min(c.start for c in created.values())
        creates_wall = max(c.done for c in created.values()) - first
        n = len(names)
        await watcher.wait(
            lambda: watcher.count_submitted(names) >= n, 120 + n / 5, f"{n} Flows Submitted"
        )
        submit_wall = max(watcher.submitted_at[nm] for nm in names) - first

        large_prefix = prefix_for(topology, "l")
        k = prm.large_children
        big = on_secret(flow_doc("large", large_prefix, tree("lp", "lc", k)))
        made = (await create_flows(custom, ns, [big], 1))["large"]
        await watcher.wait(lambda: "large" in watcher.submitted_at, 300, "large Submitted")
        ws = workers_on(env, url, f"topo-{topology}-{r}")
        t_workers = time.time()
        ws.start("node", ["lp", "lc"], large_prefix, concurrency=100)
        await watcher.wait(lambda: "large" in watcher.finished_at, 600, "large Completed")
        env.stop_workers(ws)
        return {
            "topology": topology,
            "flows": n,
            "creates_wall_s": creates_wall,
            "submitted_wall_s": submit_wall,
            "keep_pace_ratio": submit_wall / creates_wall,
            "flows_per_s": n / submit_wall,
            "children": k,
            "large_create_to_submitted_s": watcher.submitted_at["large"] - made.start,
            "large_workers_to_completed_s": watcher.finished_at["large"] - t_workers,
            "large_phase": watcher.phase.get("large"),
        }
    finally:
        await watcher.stop()


def workers_on(env: BenchEnv, url: str, name: str) -> Any:
    """env.workers() on another Redis URL (stopped with the environment like the others)."""
    ws = env.workers(name)
    ws.redis_url = url
    return ws


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "keep_pace_ratio",
        "flows_per_s",
        "large_create_to_submitted_s",
        "large_workers_to_completed_s",
    )
    return {key: over_runs(runs, key) for key in keys}


def rows(prm: Params, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The Cluster's p50 against the standalone's p50 (the `python` column holds it)."""
    sa, cl = metrics["standalone"], metrics["cluster"]

    def vs(metric: str, key: str, unit: str) -> dict[str, Any]:
        return row(metric, cl[key]["p50"], unit, py=sa[key]["p50"], vs="python")

    return [
        vs(
            f"Cluster: keep-pace ratio, {prm.sub_flows:,} Flows (1.0 = as fast as created)",
            "keep_pace_ratio",
            "x",
        ),
        vs("Cluster: flows/s submitted", "flows_per_s", "flows/s"),
        vs(
            f"Cluster: {prm.large_children:,}-child Flow, create → Submitted",
            "large_create_to_submitted_s",
            "s",
        ),
        vs(
            f"Cluster: {prm.large_children:,}-child Flow, workers started → Completed",
            "large_workers_to_completed_s",
            "s",
        ),
    ]


def notes() -> list[str]:
    return [
        "Standalone vs Redis Cluster (3 masters + 3 replicas on this machine's loopback, "
        "tests/harness/redis_topologies.py), one operator for both, topologies alternating "
        "run by run. The baseline column of each row is the standalone Redis's p50 "
        "(shown under 'Python' by the report's layout); ratio = Cluster / standalone.",
        "On the Cluster every Flow's keys share the prefix's hash slot, so one master takes "
        "each Flow's writes: the Cluster spreads different prefixes (tenants), not one "
        "Flow, over its masters. Its replicas cost the master replication traffic.",
    ]
