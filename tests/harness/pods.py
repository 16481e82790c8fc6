"""Runs real local processes for the (kwok-faked) Pods of a workload.

kwok only pretends to run containers. `PodProcessSupervisor` closes that gap for tests: for
every Ready, non-terminating Pod matching a label selector it starts one local subprocess
built from the Pod's first container (command + args, literal env and a few fieldRefs), and
when the Pod gets a deletionTimestamp or disappears it sends SIGTERM and waits up to the
Pod's grace period before SIGKILL — like a kubelet would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.harness.process import _set_pdeathsig

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 30.0  # the API server's default terminationGracePeriodSeconds
CommandForPod = Callable[[Any], list[str]]
EnvForPod = Callable[[Any], Mapping[str, str]]


@dataclass
class PodProcess:
    pod_name: str
    pod_uid: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    terminating_since: float | None = None
    exit_code: int | None = None
    finished_at: float | None = None
    killed: bool = False
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        if self.exit_code is None:
            code = self.popen.poll()
            if code is not None:
                self.exit_code = code
                self.finished_at = time.monotonic()
                if self._log_file is not None:
                    self._log_file.close()
                    self._log_file = None
        return self.exit_code

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class PodProcessSupervisor:
    def __init__(
        self,
        kubeconfig: Path | str,
        namespace: str,
        label_selector: str,
        *,
        extra_env: Mapping[str, str] | None = None,
        command_for_pod: CommandForPod | None = None,
        env_for_pod: EnvForPod | None = None,
        log_dir: Path | None = None,
        cwd: Path | None = None,
        restart_on_exit: bool = True,
        restart_backoff: float = 1.0,
        poll_interval: float = 0.2,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.namespace = namespace
        self.label_selector = label_selector
        self.extra_env = dict(extra_env or {})
        self.command_for_pod = command_for_pod
        self.env_for_pod = env_for_pod
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="podprocs-"))
        self.cwd = cwd
        self.restart_on_exit = restart_on_exit
        self.restart_backoff = restart_backoff
        self.poll_interval = poll_interval
        self._lock = threading.RLock()
        self._active: dict[str, PodProcess] = {}  # by pod uid; running or terminating
        self._finished: list[PodProcess] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[str] = []

    # -- public API --------------------------------------------------------------------------

    def start(self) -> PodProcessSupervisor:
        self._thread = threading.Thread(target=self._run, name="pod-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None

    def __enter__(self) -> PodProcessSupervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def running(self) -> dict[str, PodProcess]:
        """Pod name -> process, for processes alive and not asked to terminate."""
        with self._lock:
            return {
                p.pod_name: p
                for p in self._active.values()
                if p.poll() is None and p.terminating_since is None
            }

    def alive(self) -> list[PodProcess]:
        """Every live process, including ones terminating."""
        with self._lock:
            return [p for p in self._active.values() if p.poll() is None]

    def finished(self) -> list[PodProcess]:
        with self._lock:
            self._reap_locked()
            return list(self._finished)

    def exit_codes(self) -> dict[str, list[int]]:
        """Pod name -> exit codes of its finished processes, oldest first."""
        out: dict[str, list[int]] = {}
        for p in self.finished():
            if p.exit_code is not None:
                out.setdefault(p.pod_name, []).append(p.exit_code)
        return out

    @property
    def errors(self) -> list[str]:
        return list(self._errors)

    def wait_for_running(self, count: int, timeout: float = 60.0) -> dict[str, PodProcess]:
        """Waits until exactly `count` processes run and none is still terminating."""
        deadline = time.monotonic() + timeout
        while True:
            running = self.running()
            if len(running) == count and len(self.alive()) == count:
                return running
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"expected {count} pod processes, have running={sorted(running)} "
                    f"alive={[p.pod_name for p in self.alive()]} errors={self._errors[-3:]}"
                )
            time.sleep(0.1)

    # -- loop --------------------------------------------------------------------------------

    def _run(self) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=self.kubeconfig)
        core = client.CoreV1Api(api)
        try:
            while not self._stop.is_set():
                try:
                    pods = core.list_namespaced_pod(
                        self.namespace, label_selector=self.label_selector, _request_timeout=10
                    ).items
                    self._reconcile(pods)
                except Exception as exc:
                    log.warning("pod supervisor: %r", exc)
                    self._errors.append(repr(exc))
                self._stop.wait(self.poll_interval)
        finally:
            self._terminate_all()
            api.close()

    def _reap_locked(self) -> None:
        for uid, proc in list(self._active.items()):
            if proc.poll() is not None:
                del self._active[uid]
                self._finished.append(proc)
                log.info("pod process %s exited %s", proc.pod_name, proc.exit_code)

    def _reconcile(self, pods: list[Any]) -> None:
        now = time.monotonic()
        by_uid = {p.metadata.uid: p for p in pods}
        with self._lock:
            self._reap_locked()
            # Terminate processes whose pod is going away.
            for uid, proc in self._active.items():
                pod = by_uid.get(uid)
                if proc.terminating_since is None and (
                    pod is None or pod.metadata.deletion_timestamp is not None
                ):
                    if pod is not None:
                        proc.grace_seconds = termination_grace(pod, proc.grace_seconds)
                    proc.terminating_since = now
                    log.info(
                        "SIGTERM pod process %s (grace %ss)", proc.pod_name, proc.grace_seconds
                    )
                    _signal_group(proc.popen, signal.SIGTERM)
                elif (
                    proc.terminating_since is not None
                    and not proc.killed
                    and now - proc.terminating_since > proc.grace_seconds
                ):
                    log.info("SIGKILL pod process %s after grace", proc.pod_name)
                    proc.killed = True
                    _signal_group(proc.popen, signal.SIGKILL)
            # Start processes for ready pods.
            for uid, pod in by_uid.items():
                if uid in self._active or not _pod_ready(pod):
                    continue
                if pod.metadata.deletion_timestamp is not None:
                    continue
                previous = [p for p in self._finished if p.pod_uid == uid]
                if previous:
                    last = previous[-1]
                    if not self.restart_on_exit:
                        continue
                    if last.finished_at and now - last.finished_at < self.restart_backoff:
                        continue
                try:
                    self._active[uid] = self._spawn(pod, restarts=len(previous))
                except Exception as exc:
                    msg = f"cannot start process for pod {pod.metadata.name}: {exc!r}"
                    if msg not in self._errors:
                        log.error(msg)
                        self._errors.append(msg)

    def _spawn(self, pod: Any, restarts: int) -> PodProcess:
        container = pod.spec.containers[0]
        if self.command_for_pod is not None:
            argv = list(self.command_for_pod(pod))
        else:
            argv = list(container.command or []) + list(container.args or [])
        if not argv:
            raise ValueError("container has no command; pass command_for_pod")
        container_env = _container_env(pod, container)
        if self.command_for_pod is None:
            argv = [_expand(a, container_env) for a in argv]
        env = dict(os.environ)
        env.update(container_env)
        env.update({"HOSTNAME": pod.metadata.name})
        if self.env_for_pod is not None:
            env.update(self.env_for_pod(pod))
        env.update(self.extra_env)
        name = pod.metadata.name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed when the process is reaped
        log_file.write(f"+ [restart {restarts}] {' '.join(argv)}\n".encode())
        log_file.flush()
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            process_group=0,
            preexec_fn=_set_pdeathsig,
        )
        log.info("started pod process %s pid=%s: %s", name, popen.pid, argv)
        return PodProcess(
            pod_name=name,
            pod_uid=pod.metadata.uid,
            argv=argv,
            popen=popen,
            log_path=log_path,
            started_at=time.monotonic(),
            grace_seconds=termination_grace(pod, DEFAULT_GRACE_SECONDS),
            _log_file=log_file,
        )

    def _terminate_all(self) -> None:
        with self._lock:
            procs = [p for p in self._active.values() if p.poll() is None]
            for p in procs:
                if p.terminating_since is None:
                    p.terminating_since = time.monotonic()
                    _signal_group(p.popen, signal.SIGTERM)
            for p in procs:
                since = p.terminating_since or time.monotonic()
                remaining = p.grace_seconds - (time.monotonic() - since)
                try:
                    p.popen.wait(max(0.0, remaining))
                except subprocess.TimeoutExpired:
                    p.killed = True
                    _signal_group(p.popen, signal.SIGKILL)
                    p.popen.wait(10)
                p.poll()
            for uid, p in list(self._active.items()):
                p.poll()
                self._finished.append(p)
                del self._active[uid]


def termination_grace(pod: Any, default: float) -> float:
    """Seconds between SIGTERM and SIGKILL for a pod's process, as a kubelet would allow.

    A deleted pod carries the deleter's grace in deletionGracePeriodSeconds. kwok then confirms
    the deletion at once with a grace-0 delete (a kubelet does that once the containers have
    stopped), and the pod may be seen in that state first: a 0 is kwok's, not the deleter's.
    """
    grace = pod.metadata.deletion_grace_period_seconds
    if not grace:
        grace = pod.spec.termination_grace_period_seconds
    return default if grace is None else float(grace)


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(arg: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command/args (unknown references stay as they are)."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), arg)


def _signal_group(popen: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)


def _pod_ready(pod: Any) -> bool:
    status = pod.status
    if status is None or status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])


def _container_env(pod: Any, container: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    fields = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": pod.spec.node_name or "",
        "spec.serviceAccountName": pod.spec.service_account_name or "",
        "status.podIP": (pod.status and pod.status.pod_ip) or "",
        "status.hostIP": (pod.status and pod.status.host_ip) or "",
    }
    for var in container.env or []:
        if var.value is not None:
            out[var.name] = var.value
        elif var.value_from is not None and var.value_from.field_ref is not None:
            path = var.value_from.field_ref.field_path
            if path in fields:
                out[var.name] = fields[path]
        elif var.value_from is None:
            out[var.name] = ""
    return out
