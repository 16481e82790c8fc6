"""12. Worker throughput: `bullflow-worker` against a plain Python bullmq `Worker`, same Redis.

Each run fills one fresh queue with `jobs` no-op jobs, then starts one worker process on it: either
`bullflow-worker -p bullflow_worker.processors:echo` (as a WorkerPool runs it: text logs at info, a
summary line per queue every 30 s, metrics, activity bookkeeping) or a plain Python bullmq Worker
with the same echo processor (this module: `python -m bench.bullflow_bench.worker_throughput worker
URL PREFIX QUEUE CONCURRENCY`). Throughput is jobs / (last `finishedOn` - first `processedOn`), the
times bullmq itself writes into each job's hash (Redis-side ms), so process start-up and the filling
are not counted. Lanes alternate, their order swapped every round; the ratio is bullflow / plain,
per round, and the row shows the median. On a Redis Cluster (3 masters + 3 replicas, tests/harness)
both workers take a `RedisCluster` client from bullflow's factory and the prefix is hash-tagged.

Standalone: `python -m bench.bullflow_bench.worker_throughput [--jobs N] [--rounds R]
[--concurrency C ...] [--cluster] [--out FILE.json]` starts its own redis-server (and cluster),
no Kubernetes needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LANES = ("bullflow", "python")
# Not in the rows: bullflow-worker with a log line per job (--log-level debug), to see its cost.
EXTRA_LANES = ("bullflow-debug",)
WORKER_BIN = Path(sys.executable).with_name("bullflow-worker")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Target:
    """Where the queues live: the worker's URL, and a plain client for filling and reading
    (on a Cluster, the master owning the prefix's slot: redis-py's cluster pipeline refuses
    the EVALSHAs bullmq's addBulk queues)."""

    topology: str
    url: str
    prefix: str
    data_host: str
    data_port: int
    password: str | None


def _worker_cmd(lane: str, target: Target, queue: str, concurrency: int) -> list[str]:
    if lane.startswith("bullflow"):
        level = ["--log-level", "debug"] if lane == "bullflow-debug" else []
        return [
            *(str(WORKER_BIN), "-q", queue, "-p", "bullflow_worker.processors:echo"),
            *("-c", str(concurrency), "--prefix", target.prefix, "--http-port", "0"),
            *("--redis-url", target.url, *level),
        ]
    return [
        *(sys.executable, "-m", "bench.bullflow_bench.worker_throughput", "worker"),
        *(target.url, target.prefix, queue, str(concurrency)),
    ]


async def _fill(client: Any, target: Target, queue: str, jobs: int) -> None:
    from bullmq import Queue

    q = Queue(queue, {"connection": client, "prefix": target.prefix})
    for start in range(0, jobs, 500):
        batch = range(start, min(jobs, start + 500))
        await q.addBulk(
            [{"name": "n", "data": {"i": i}, "opts": {"jobId": f"j{i}"}} for i in batch]
        )


async def _span_ms(client: Any, target: Target, queue: str, jobs: int) -> float:
    """Last finishedOn - first processedOn over every job of the queue (bullmq's own ms)."""
    async with client.pipeline(transaction=False) as pipe:
        for i in range(jobs):
            pipe.hmget(f"{target.prefix}:{queue}:j{i}", "processedOn", "finishedOn")
        got = await pipe.execute()
    processed = [int(p) for p, _ in got]
    finished = [int(f) for _, f in got]
    return float(max(finished) - min(processed))


async def _settled(pid: int) -> float:
    """The process' CPU seconds once it has started and gone idle (a paused queue)."""
    from .env import proc_cpu_seconds

    await asyncio.sleep(1.0)
    last = proc_cpu_seconds(pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = proc_cpu_seconds(pid)
        if now - last < 0.02:
            return now
        last = now
    raise TimeoutError("the worker never went idle")


async def one_run(
    client: Any, target: Target, lane: str, jobs: int, concurrency: int, log_dir: Path
) -> tuple[float, float]:
    """(jobs per second, CPU ms per job) of one worker process of `lane` draining `jobs`
    pre-filled jobs. The queue is paused while the worker starts, so its start-up CPU is not
    counted; CPU per job is the steadier number on a shared machine."""
    from bullmq import Queue

    from .env import proc_cpu_seconds

    queue = f"tp-{lane}-{uuid.uuid4().hex[:6]}"
    q = Queue(queue, {"connection": client, "prefix": target.prefix})
    await q.pause()
    await _fill(client, target, queue, jobs)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{queue}.log", "wb") as log:
        proc = subprocess.Popen(
            _worker_cmd(lane, target, queue, concurrency),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            cpu_before = await _settled(proc.pid)
            await q.resume()
            deadline = time.monotonic() + 600
            while await client.zcard(f"{target.prefix}:{queue}:completed") < jobs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{lane} worker exited {proc.returncode}, see {log.name}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lane} worker did not finish {jobs} jobs")
                await asyncio.sleep(0.2)
            cpu_ms_per_job = (proc_cpu_seconds(proc.pid) - cpu_before) * 1000.0 / jobs
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    return jobs / (await _span_ms(client, target, queue, jobs) / 1000.0), cpu_ms_per_job


async def compare(
    target: Target,
    jobs: int,
    rounds: int,
    concurrency: int,
    log_dir: Path,
    lanes: tuple[str, ...] = LANES,
) -> dict[str, Any]:
    """`rounds` rounds of the lanes (order reversed every other round): rates and per-round
    ratios to the plain Python worker."""
    import redis.asyncio as aioredis

    client = aioredis.Redis(
        host=target.data_host,
        port=target.data_port,
        password=target.password,
        decode_responses=True,
    )
    rates: dict[str, list[float]] = {lane: [] for lane in lanes}
    cpu: dict[str, list[float]] = {lane: [] for lane in lanes}
    try:
        for r in range(rounds):
            order = lanes if r % 2 == 0 else tuple(reversed(lanes))
            for lane in order:
                rate, cpu_ms = await one_run(client, target, lane, jobs, concurrency, log_dir)
                rates[lane].append(rate)
                cpu[lane].append(cpu_ms)
    finally:
        await client.aclose()
    others = [lane for lane in lanes if lane != "python"]
    ratios = {
        lane: [b / p for b, p in zip(rates[lane], rates["python"], strict=True)] for lane in others
    }
    # Throughput implied by CPU: plain CPU per job / bullflow's (higher is better, like jobs/s).
    cpu_ratios = {
        lane: [p / b for b, p in zip(cpu[lane], cpu["python"], strict=True)] for lane in others
    }
    return {
        "topology": target.topology,
        "concurrency": concurrency,
        "jobs": jobs,
        "jobs_per_s": rates,
        "cpu_ms_per_job": cpu,
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "median": {
            **{lane: statistics.median(rates[lane]) for lane in lanes},
            **{f"{lane}_cpu_ms": statistics.median(cpu[lane]) for lane in lanes},
            "ratio": statistics.median(ratios["bullflow"]),
            "cpu_ratio": statistics.median(cpu_ratios["bullflow"]),
        },
    }


def rows_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from .rows import row

    out = []
    for res in results:
        m = res["median"]
        where = f"{res['topology']}, concurrency {res['concurrency']}"
        out.append(
            row(
                f"worker throughput, {where}",
                round(m["bullflow"], 1),
                "jobs/s",
                py=round(m["python"], 1),
                vs="python",
                target="≥ 0.95 x plain Python bullmq",
                met=m["ratio"] >= 0.95,
            )
        )
        # Lower is better here, so the target is on plain / bullflow (cpu_ratio).
        out.append(
            row(
                f"worker CPU per job, {where}",
                round(m["bullflow_cpu_ms"], 3),
                "ms",
                py=round(m["python_cpu_ms"], 3),
                vs="python",
                target="plain/bullflow ≥ 0.95",
                met=m["cpu_ratio"] >= 0.95,
            )
        )
    return out


NOTE = (
    "bullflow-worker (bullflow_worker.processors:echo, text logs at info: a summary line per queue"
    " every 30 s; metrics) against a plain Python bullmq 3.4.4 Worker with the same echo "
    "processor, one process each, the same concurrency, on fresh queues of the same Redis, lanes "
    "alternating. jobs/s = jobs / (last finishedOn - first processedOn), bullmq's own timestamps; "
    "CPU per job = the worker process' user+sys CPU while it drains (its start-up excluded: the "
    "queue is paused until it idles). The ratio is taken per round; the rows show medians."
)


def _cluster_target(cluster: Any) -> Target:
    master = cluster.master_for("{bull}")
    return Target("cluster", cluster.url, "{bull}", "127.0.0.1", master.port, cluster.password)


async def worker_throughput(env: Any, prm: Any, *, smoke: bool = False) -> dict[str, Any]:
    """The suite's scenario (python -m bench.bullflow_bench): on the suite's Redis, and (not
    with --smoke) on a Redis Cluster of its own."""
    from bullflow_worker.redis_address import parse_redis_address
    from tests.harness.redis_topologies import RedisClusterTopology

    jobs, rounds, concurrencies = (200, 1, [10]) if smoke else (5000, 4, [1, 10])
    address = parse_redis_address(env.redis_url)
    host, port = address.nodes[0]
    targets = [Target("standalone", env.redis_url, "bull", host, port, address.password)]
    log_dir = env.workdir / "logs" / "throughput"
    results = [await compare(targets[0], jobs, rounds, c, log_dir) for c in concurrencies]
    if not smoke:
        cluster = RedisClusterTopology(env.workdir / "throughput-cluster")
        cluster.start()
        try:
            target = _cluster_target(cluster)
            results += [await compare(target, jobs, rounds, c, log_dir) for c in concurrencies]
        finally:
            cluster.stop()
    return {
        "status": "ok",
        "params": {"jobs": jobs, "rounds": rounds, "concurrency": concurrencies},
        "runs": results,
        "metrics": {f"{r['topology']}_c{r['concurrency']}": r["median"] for r in results},
        "rows": rows_of(results),
        "notes": [NOTE],
    }


async def _plain_worker(url: str, prefix: str, queue: str, concurrency: int) -> None:
    """A plain Python bullmq Worker with the echo processor: the baseline. On a Sentinel or
    Cluster URL it takes the client bullflow's factory builds (bullmq builds none from such
    a URL), shared between its main and blocking connection as bullmq does with an instance."""
    from bullmq import Worker

    from bullflow_worker.redis_address import parse_redis_address
    from bullflow_worker.redis_clients import async_client

    async def process(job: Any, token: str) -> Any:
        return job.data

    address = parse_redis_address(url)
    connection: Any = (
        url if address.topology == "standalone" else async_client(address, decode_responses=True)
    )
    opts = {"connection": connection, "prefix": prefix, "concurrency": concurrency}
    worker = Worker(queue, process, opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await worker.close()


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bullflow_bench.worker_throughput")
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--concurrency", type=int, action="append")
    p.add_argument("--cluster", action="store_true", help="also on a Redis Cluster")
    p.add_argument(
        "--debug-lane", action="store_true", help="also bullflow-worker with --log-level debug"
    )
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    from tests.harness.redis import RedisServer
    from tests.harness.redis_topologies import RedisClusterTopology

    args = _parse(argv)
    lanes = LANES + (EXTRA_LANES if args.debug_lane else ())
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        work = Path(tmp)
        server = RedisServer(work / "redis")
        server.start()
        try:
            standalone = Target(
                "standalone", server.url, "bull", "127.0.0.1", server.port, server.password
            )
            for c in args.concurrency or [1, 10]:
                results.append(
                    asyncio.run(
                        compare(standalone, args.jobs, args.rounds, c, work / "logs", lanes)
                    )
                )
        finally:
            server.stop()
        if args.cluster:
            cluster = RedisClusterTopology(work / "cluster")
            cluster.start()
            try:
                target = _cluster_target(cluster)
                for c in args.concurrency or [1, 10]:
                    results.append(
                        asyncio.run(
                            compare(target, args.jobs, args.rounds, c, work / "logs", lanes)
                        )
                    )
            finally:
                cluster.stop()
    report = {
        "scenario": "worker_throughput",
        "runs": results,
        "rows": rows_of(results),
        "notes": [NOTE],
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "worker":
        asyncio.run(_plain_worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
