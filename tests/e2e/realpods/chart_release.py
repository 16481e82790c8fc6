"""The chart's operator running as a real pod on the real node (tests/harness/node.py).

`OperatorRelease` is one `helm install` of charts/bullflow with the image `make images` built
(localhost/bullflow-operator:dev, imagePullPolicy Never, placed on the real node), against a
password-protected redis-server that also listens on the node's bridge address, so pods reach
it; the operator reads that URL from the chart's Secret. Job executions are counted from
BullMQ's own event streams, never from the workers' say-so.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_sync
import yaml

from bullflow import GROUP, VERSION
from tests.harness import node_config as cfg
from tests.harness.fixtures import Kubectl
from tests.harness.node import RealNode
from tests.harness.process import wait_for
from tests.harness.redis import RedisServer
from tests.harness.tools import Tools

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "bullflow"
RELEASE = "bf"
OPERATOR_REPOSITORY = "localhost/bullflow-operator"
WORKER_IMAGE = "localhost/bullflow-worker:dev"
OPERATOR_UID = 65532
OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"
# Only the node can reach this Redis, so the password is a test value, not a secret.
REDIS_PASSWORD = "real-pods-redis-password"


def build_images() -> dict[str, Path]:
    """`make images` (a cache check when `make test` built them); name -> docker archive."""
    build = ROOT / "hack" / "build-images.sh"
    proc = subprocess.run(["bash", str(build)], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, f"make images failed:\n{proc.stdout}{proc.stderr}"
    listing = subprocess.run(
        ["bash", str(build), "--print-archives"], capture_output=True, text=True, check=True
    )
    return {line.split()[0]: Path(line.split()[2]) for line in listing.stdout.splitlines()}


@dataclass
class OperatorRelease:
    namespace: str
    redis: RedisServer
    tools: Tools
    kubeconfig: Path
    kubectl: Kubectl
    node: RealNode

    @property
    def pod_redis_url(self) -> str:
        return self.redis.url_at(cfg.NODE_IP)

    def helm(self, *args: str, timeout: float = 400) -> str:
        proc = subprocess.run(
            [str(self.tools.helm), f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"helm {args[0]} failed:\n{proc.stderr}{proc.stdout}\n{self.diagnosis()}"
            )
        return proc.stdout

    def install_args(self, tag: str) -> list[str]:
        placement = cfg.real_node_placement()
        values = {
            "image": {"repository": OPERATOR_REPOSITORY, "tag": tag, "pullPolicy": "Never"},
            "redis": {"url": self.pod_redis_url},
            "nodeSelector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
            "logFormat": "text",
        }
        values_file = self.kubeconfig.parent / f"real-pods-values-{tag}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        values_file.chmod(0o600)  # holds the Redis password
        return ["-f", str(values_file), "--wait", "--timeout=300s"]

    def operator_pod(self) -> dict[str, Any]:
        """The one operator pod that is not being deleted."""
        pods = json.loads(
            self.kubectl(
                "get", "pods", "-n", self.namespace, "-l", OPERATOR_SELECTOR, "-o", "json"
            ).stdout
        )["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        assert len(live) == 1, [p["metadata"]["name"] for p in pods]
        return live[0]  # type: ignore[no-any-return]

    def wait_operator_ready(self, timeout: float = 240) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            try:
                pod = self.operator_pod()
            except AssertionError:
                return None
            statuses = pod["status"].get("containerStatuses") or []
            return pod if statuses and statuses[0].get("ready") else None

        try:
            pod: dict[str, Any] = wait_for(ready, timeout, "the operator pod Ready", 1)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.diagnosis()}") from None
        return pod

    def operator_exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        name = self.operator_pod()["metadata"]["name"]
        return self.kubectl("exec", "-n", self.namespace, name, "--", *argv, check=False)

    def diagnosis(self) -> str:
        """The operator pod's description and log tail, for failure messages."""
        pods = self.kubectl(
            "describe", "pods", "-n", self.namespace, "-l", OPERATOR_SELECTOR, check=False
        )
        logs = self.kubectl(
            "logs", "-n", self.namespace, "-l", OPERATOR_SELECTOR, "--tail=40", check=False
        )
        return f"pods:\n{pods.stdout}{pods.stderr}\nlogs:\n{logs.stdout}{logs.stderr}"


def real_pool(name: str, queues: list[str], prefix: str, **worker: Any) -> dict[str, Any]:
    """A WorkerPool whose workers are real containers of the worker image on the real node."""
    placement = cfg.real_node_placement()
    scaling = worker.pop("scaling", {"minReplicas": 1, "maxReplicas": 1})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {
            "queues": queues,
            "prefix": prefix,
            "worker": {
                "processor": "bullflow_worker.processors:scripted",
                "image": WORKER_IMAGE,
                "imagePullPolicy": "Never",
                "nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"],
                "terminationGracePeriodSeconds": 60,
                **worker,
            },
            "scaling": scaling,
        },
    }


def sleepy_flow(name: str, prefix: str, children: int, seconds: float) -> dict[str, Any]:
    """A parent summing `children` children that each sleep `seconds` (queues rp-parent and
    rp-child); its result is 0 + 1 + ... + children-1."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Flow",
        "metadata": {"name": name},
        "spec": {
            "prefix": prefix,
            "root": {
                "name": "total",
                "queueName": "rp-parent",
                "data": {"combine": "sum"},
                "children": [
                    {
                        "name": f"part-{i}",
                        "queueName": "rp-child",
                        "data": {"result": i, "sleepSeconds": seconds},
                    }
                    for i in range(children)
                ],
            },
        },
    }


@dataclass
class JobEvents:
    """Per event name (added, active, completed, failed, stalled, ...): per job id, how often
    BullMQ's event streams of the queues say it happened."""

    by_event: dict[str, Counter[str]]

    def ids(self, event: str) -> set[str]:
        return set(self.by_event.get(event, Counter()))

    def more_than_once(self, event: str) -> dict[str, int]:
        return {job: n for job, n in self.by_event.get(event, Counter()).items() if n > 1}


def job_events(url: str, prefix: str, queues: list[str]) -> JobEvents:
    r = redis_sync.Redis.from_url(url, decode_responses=True)
    by_event: dict[str, Counter[str]] = defaultdict(Counter)
    try:
        for queue in queues:
            for _, fields in r.xrange(f"{prefix}:{queue}:events"):
                if "jobId" in fields:
                    by_event[fields["event"]][f"{queue}/{fields['jobId']}"] += 1
    finally:
        r.close()
    return JobEvents(dict(by_event))


def assert_each_job_ran_once(events: JobEvents, expected_jobs: int) -> None:
    """Every job went active and completed exactly once; none failed, stalled or re-added."""
    assert len(events.ids("completed")) == expected_jobs, events.by_event.get("completed")
    assert events.ids("active") == events.ids("completed"), events.by_event
    assert not events.more_than_once("active"), "a job ran twice"
    assert not events.more_than_once("completed"), "a job completed twice"
    assert not events.more_than_once("added"), "a job was added twice"
    assert not events.ids("duplicated"), "a job id was submitted twice"
    assert not events.ids("stalled"), "a job lost its worker mid-run"
    assert not events.ids("failed"), events.by_event.get("failed")
