"""Run the real operator and real BullMQ workers as local processes for e2e tests."""

from __future__ import annotations

import os
import signal
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.harness.process import ManagedProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
NODE_WORKER = ROOT / "tests" / "interop" / "worker.mjs"


class OperatorProcess:
    """`python -m bullflow` with a liveness endpoint; can be SIGKILLed and restarted."""

    def __init__(
        self,
        kubeconfig: Path,
        redis_url: str,
        log_dir: Path,
        namespaces: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        launcher: Sequence[str] = ("-m", "bullflow"),
    ) -> None:
        """`launcher`: what python runs; a test module can wrap the operator's main with a fault
        (tests/e2e/crash_after_submit.py)."""
        self.kubeconfig, self.redis_url, self.log_dir = kubeconfig, redis_url, log_dir
        self.launcher = list(launcher)
        self.namespaces = list(namespaces)
        self.extra_env = dict(env or {})
        self.proc: ManagedProcess | None = None
        self.starts = 0
        self.metrics_port = free_port()

    name = "operator"

    def mode_args(self) -> list[str]:
        """How this operator coexists with others; subclasses run with kopf peering."""
        return ["--standalone"]

    def start(self) -> OperatorProcess:
        port = free_port()
        argv = [
            sys.executable,
            *self.launcher,
            *self.mode_args(),
            f"--liveness=http://127.0.0.1:{port}/healthz",
            f"--metrics-port={self.metrics_port}",
        ]
        argv += [f"--namespace={ns}" for ns in self.namespaces]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "BULLFLOW_REDIS_URL": self.redis_url,
            "BULLFLOW_RESYNC_INTERVAL_SECONDS": "5",
            **self.extra_env,
        }
        self.starts += 1
        self.proc = ManagedProcess(
            f"{self.name}-{self.starts}",
            argv,
            self.log_dir / f"operator-{self.starts}.log",
            env=env,
            cwd=ROOT,
        )
        self.proc.start()
        wait_for(
            lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
            60,
            f"{self.name}'s liveness endpoint",
            check=self.proc.check_running,
        )
        return self

    def kill9(self) -> None:
        assert self.proc and self.proc.proc
        os.killpg(self.proc.proc.pid, signal.SIGKILL)
        self.proc.proc.wait(10)

    def exited(self) -> bool:
        return self.proc is not None and not self.proc.running()

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


def http_ok(url: str, timeout: float = 1) -> bool:
    """True if `url` answers 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class WorkerSet:
    """Real BullMQ workers (Python bullflow-worker or Node.js bullmq) on the given queues."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url, self.log_dir = redis_url, log_dir
        self.procs: list[ManagedProcess] = []

    def start(
        self,
        language: str,
        queues: Sequence[str],
        prefix: str,
        concurrency: int = 20,
        processor: str = "bullflow_worker.processors:scripted",
        env: Mapping[str, str] | None = None,
    ) -> ManagedProcess:
        queue_args = [arg for q in sorted(set(queues)) for arg in ("--queue", q)]
        if language == "python":
            argv = [
                str(Path(sys.executable).with_name("bullflow-worker")),
                *queue_args,
                "--processor",
                processor,
                "--prefix",
                prefix,
                "--redis-url",
                self.redis_url,
                "--concurrency",
                str(concurrency),
                "--http-port",
                "0",
            ]
        elif language == "node":
            argv = [
                "node",
                str(NODE_WORKER),
                *queue_args,
                "--prefix",
                prefix,
                "--redis-url",
                self.redis_url,
                "--concurrency",
                str(concurrency),
            ]
        else:
            raise ValueError(language)
        name = f"{language}-worker-{len(self.procs)}"
        proc = ManagedProcess(
            name, argv, self.log_dir / f"{name}.log", env={**os.environ, **(env or {})}, cwd=ROOT
        )
        proc.start()
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs.clear()
