"""The benchmark environment: a fresh local control plane + redis-server, the CRDs, the real
operator process (one per scenario, watching only that scenario's namespaces), real workers,
and the instruments: a Flow watcher, process RSS/CPU sampling, the operator's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bullflow import GROUP, VERSION
from bullflow.controllers.flow import FINALIZER
from tests.e2e.operator_proc import ROOT, OperatorProcess, WorkerSet
from tests.harness.cluster import LocalCluster
from tests.harness.redis import RedisServer
from tests.harness.tools import ensure_tools

log = logging.getLogger("bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")
NODE_BASELINE = ROOT / "bench" / "flowproducer.mjs"
FINISHED = ("Completed", "Failed")


# -- process accounting ----------------------------------------------------------------------


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (its own threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def main_thread_schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of the process's main thread,
    the operator's event loop (/proc/<pid>/schedstat; the kernel's scheduler statistics)."""
    with open(f"/proc/{pid}/schedstat") as f:
        on_cpu_ns, waiting_ns = f.read().split()[:2]
    return int(on_cpu_ns) / 1e9, int(waiting_ns) / 1e9


class Sampler:
    """Samples a process's RSS every `interval` seconds (asyncio task) and its CPU over the
    window: `async with Sampler(pid) as s: ...; s.result()`."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.rss: list[int] = []
        self.cpu0 = self.cpu1 = 0.0
        self.t0 = self.t1 = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sampler:
        self.t0, self.cpu0 = time.monotonic(), proc_cpu_seconds(self.pid)
        self.rss.append(proc_rss_bytes(self.pid))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(OSError):
            self.rss.append(proc_rss_bytes(self.pid))
            self.t1, self.cpu1 = time.monotonic(), proc_cpu_seconds(self.pid)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(OSError):
                self.rss.append(proc_rss_bytes(self.pid))

    def result(self) -> dict[str, float]:
        wall = max(self.t1 - self.t0, 1e-9)
        cpu = self.cpu1 - self.cpu0
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "cpu_percent": 100.0 * cpu / wall,
            "rss_mib_peak": max(self.rss) / 2**20,
            "rss_mib_mean": sum(self.rss) / len(self.rss) / 2**20,
            "rss_mib_end": self.rss[-1] / 2**20,
        }


def machine_info() -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 2**20, 1),
        "load_avg": list(os.getloadavg()),
    }


# -- the operator's /metrics -----------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value from the operator's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in samples.items():
        base = key.split("{", 1)[0]
        if base != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


# -- the Flow watcher ------------------------------------------------------------------------


@dataclass
class FlowWatcher:
    """Watches the Flows of one namespace and records, by the time each event arrived here:
    when each Flow was first seen (its ADDED event), first showed `submittedAt` and a finished
    phase, when each listed job first showed `completed`, how many MODIFIED events each Flow had
    and its largest status."""

    custom: Any
    namespace: str
    added_at: dict[str, float] = field(default_factory=dict)
    finalized_at: dict[str, float] = field(default_factory=dict)  # bullflow's finalizer seen
    submitted_at: dict[str, float] = field(default_factory=dict)
    finished_at: dict[str, float] = field(default_factory=dict)
    phase: dict[str, str] = field(default_factory=dict)
    job_completed_at: dict[str, float] = field(default_factory=dict)
    modified: Counter[str] = field(default_factory=Counter)
    status_bytes: dict[str, int] = field(default_factory=dict)
    object_bytes: dict[str, int] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> FlowWatcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 30)
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def _observe(self, kind: str, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        self.added_at.setdefault(name, now)
        if FINALIZER in (obj["metadata"].get("finalizers") or ()):
            self.finalized_at.setdefault(name, now)
        if kind == "MODIFIED":
            self.modified[name] += 1
        status = obj.get("status") or {}
        if status:
            size = len(json.dumps(status, separators=(",", ":")))
            self.status_bytes[name] = max(self.status_bytes.get(name, 0), size)
            self.object_bytes[name] = max(
                self.object_bytes.get(name, 0), len(json.dumps(obj, separators=(",", ":")))
            )
        if status.get("submittedAt") and name not in self.submitted_at:
            self.submitted_at[name] = now
        phase = status.get("phase")
        if phase:
            self.phase[name] = phase
        if phase in FINISHED and name not in self.finished_at:
            self.finished_at[name] = now
        for node in status.get("nodes") or ():
            if node.get("state") == "completed" and node.get("jobId"):
                self.job_completed_at.setdefault(node["jobId"], now)
        self._changed.set()

    async def _run(self) -> None:
        from kubernetes_asyncio import watch

        rv: str | None = None
        while True:
            try:
                if rv is None:
                    listing = await self.custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, "flows"
                    )
                    now = time.time()
                    for item in listing.get("items", []):
                        self._observe("LISTED", item, now)
                    rv = listing["metadata"]["resourceVersion"]
                    self._ready.set()
                w = watch.Watch()
                async for event in w.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    "flows",
                    resource_version=rv,
                    timeout_seconds=240,
                ):
                    now = time.time()
                    if event["type"] == "ERROR":
                        rv = None
                        break
                    obj = event["object"]
                    if isinstance(obj, dict) and "metadata" in obj:
                        self._observe(event["type"], obj, now)
                        rv = obj["metadata"].get("resourceVersion", rv)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # expired resourceVersion, dropped stream: list again
                log.debug("flow watch restarted: %r", err)
                rv = None
                await asyncio.sleep(0.2)

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Waits until predicate() holds (re-checked on every event); returns time.time()."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return time.time()

    def count_submitted(self, names: Iterable[str]) -> int:
        return sum(1 for n in names if n in self.submitted_at)

    def count_finalized(self, names: Iterable[str]) -> int:
        return sum(1 for n in names if n in self.finalized_at)

    def count_finished(self, names: Iterable[str]) -> int:
        return sum(1 for n in names if n in self.finished_at)


# -- the environment -------------------------------------------------------------------------


class BenchEnv:
    """One fresh LocalCluster + RedisServer for a whole bench run; operators per scenario."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tools = ensure_tools()
        self.cluster = LocalCluster(workdir / "cluster", tools=self.tools)
        self.redis = RedisServer(workdir / "redis")
        self.operator: OperatorProcess | None = None
        self.worker_sets: list[WorkerSet] = []
        self.kube_version = ""
        self.operator_pythonpath: str | None = None  # A/B runs of a patched operator
        self.profile_dir: Path | None = None  # set: py-spy records every operator process
        self._profilers: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BenchEnv:
        self.cluster.start()
        self.kube_version = self.cluster.version
        try:
            self.redis.start()
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
            self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for ws in self.worker_sets:
            ws.stop()
        if self.operator:
            self.operator.stop()
        self.redis.stop()
        self.cluster.stop()

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def kubectl(self, *args: str, input: str | None = None) -> str:
        proc = subprocess.run(
            [str(self.tools.kubectl), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
            check=False,
        )
        if proc.returncode:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def namespaces(self, scenario: str, count: int) -> list[str]:
        """Creates the scenario's namespaces up front: the operator starts watching them at
        start-up instead of discovering them through its namespace glob (a namespace created
        right after the operator started was sometimes never watched; see the bench report)."""
        import uuid

        names = [f"bench-{scenario}-{r}-{uuid.uuid4().hex[:6]}" for r in range(count)]
        for name in names:
            self.kubectl("create", "namespace", name)
        return names

    def start_operator(self, scenario: str, env: dict[str, str] | None = None) -> OperatorProcess:
        """A fresh operator watching only `bench-<scenario>-*` namespaces."""
        self.stop_operator()
        self.operator = OperatorProcess(
            self.cluster.kubeconfig,
            self.redis.url,
            self.workdir / "logs" / scenario,
            namespaces=[f"bench-{scenario}-*"],
            # The production default (the e2e tests use 5 s): 60 s between safety-net re-reads.
            env={
                "BULLFLOW_RESYNC_INTERVAL_SECONDS": "60",
                **({"PYTHONPATH": self.operator_pythonpath} if self.operator_pythonpath else {}),
                **(env or {}),
            },
        )
        self.operator.start()
        self.profile(scenario)
        return self.operator

    def profile(self, scenario: str) -> None:
        """py-spy (sampling, no overhead in the operator) of the current operator process, as
        collapsed stacks in <profile_dir>/<scenario>-<n>.txt, until it exits."""
        if self.profile_dir is None:
            return
        pyspy = Path(sys.executable).with_name("py-spy")
        if not pyspy.exists():
            log.warning("py-spy is not installed in the venv: no profile")
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{scenario}-{len(self._profilers)}.txt"
        self._profilers.append(
            subprocess.Popen(
                [
                    str(pyspy),
                    "record",
                    "--pid",
                    str(self.operator_pid),
                    "--rate",
                    "97",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def stop_operator(self) -> None:
        if self.operator:
            self.operator.stop()
            self.operator = None
        for profiler in self._profilers:  # they end (and write) when their process exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(30)

    @property
    def operator_pid(self) -> int:
        assert self.operator and self.operator.proc and self.operator.proc.pid
        return self.operator.proc.pid

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU-seconds so far of every process in play: who competes for the 2 cores."""
        pids = {**self.cluster.pids(), "bench (this process)": os.getpid()}
        if self.redis.pid:
            pids["redis-server"] = self.redis.pid
        if self.operator and self.operator.proc and self.operator.proc.pid:
            pids["operator"] = self.operator.proc.pid
        out: dict[str, float] = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                out[name] = proc_cpu_seconds(pid)
        return out

    @staticmethod
    def cpu_share(before: dict[str, float], after: dict[str, float], wall: float) -> dict:
        """% of one core per process between two snapshots."""
        return {
            k: round(100.0 * (after[k] - before.get(k, 0.0)) / max(wall, 1e-9), 1) for k in after
        }

    def metrics(self) -> dict[str, float]:
        assert self.operator
        return scrape(self.operator.metrics_port)

    def workers(self, name: str) -> WorkerSet:
        ws = WorkerSet(self.redis.url, self.workdir / "logs" / name)
        self.worker_sets.append(ws)
        return ws

    def stop_workers(self, ws: WorkerSet) -> None:
        ws.stop()
        with contextlib.suppress(ValueError):
            self.worker_sets.remove(ws)


@contextlib.asynccontextmanager
async def kube_clients(kubeconfig: Path) -> Any:
    """(CustomObjectsApi, CoreV1Api) of kubernetes_asyncio, with a wide connection pool."""
    from kubernetes_asyncio import client, config

    conf = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=conf)
    conf.connection_pool_maxsize = 256
    api = client.ApiClient(conf)
    try:
        yield client.CustomObjectsApi(api), client.CoreV1Api(api)
    finally:
        await api.close()
