"""bullflow-worker runtime against a real redis-server, run exactly as the image runs it
(the ``bullflow-worker`` console script as a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from bullmq import FlowProducer, Job, Queue

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).with_name("bullflow-worker")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def worker_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server not installed")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("worker-redis")
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        _wait(up, 10, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


class WorkerProc:
    def __init__(self, args: list[str], redis_url: str, log_path: Path, env: dict[str, str]):
        self.http_port = _free_port()
        self.log_path = log_path
        self.cmd = [str(BIN), *args, "--http-port", str(self.http_port), "--log-format", "json"]
        full_env = {**os.environ, "BULLFLOW_REDIS_URL": redis_url, **env}
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env
        )

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited early ({self.proc.returncode}):\n{self.logs()}")
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 20) -> None:
        _wait(self.ready, timeout, "worker /readyz")

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start_worker(worker_redis_url: str, tmp_path: Path) -> Iterator[Any]:
    procs: list[WorkerProc] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> WorkerProc:
        w = WorkerProc(
            list(args), worker_redis_url, tmp_path / f"worker{len(procs)}.log", env or {}
        )
        procs.append(w)
        if ready:
            w.wait_ready()
        return w

    yield start
    for w in procs:
        w.stop()


@pytest.fixture
async def queues(worker_redis_url: str) -> AsyncIterator[Any]:
    opened: list[Queue] = []

    def make(name: str) -> Queue:
        q = Queue(name, {"connection": worker_redis_url})
        opened.append(q)
        return q

    yield make
    for q in opened:
        await q.obliterate(force=True)
        await q.close()


def _qname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _wait_state(queue: Queue, job_id: str, states: set[str], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        state = await queue.getJobState(job_id)
        if state in states:
            return str(state)
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} still {state!r} after {timeout}s, wanted {states}")


async def test_echo_jobs_complete_and_metrics(start_worker: Any, queues: Any) -> None:
    name = _qname("echo")
    q = queues(name)
    w = start_worker(
        "--queue",
        name,
        "--processor",
        "bullflow_worker.processors:echo",
        "--concurrency",
        "4",
        "--log-level",
        "debug",
    )
    jobs = [await q.add("echo", {"n": i, "s": "x" * i}) for i in range(5)]
    for job in jobs:
        assert await _wait_state(q, job.id, {"completed", "failed"}) == "completed"
        done = await Job.fromId(q, job.id)
        assert done is not None
        assert done.returnvalue == job.data

    status, body = w.get("/healthz")
    assert status == 200
    status, body = w.get("/readyz")
    assert (status, body.strip()) == (200, "ready")
    status, body = w.get("/metrics")
    assert status == 200
    assert f'bullflow_worker_jobs_completed_total{{queue="{name}"}} 5.0' in body
    assert f'bullflow_worker_jobs_failed_total{{queue="{name}"}} 0.0' in body
    assert "bullflow_worker_job_duration_seconds_bucket" in body
    assert f'bullflow_worker_active_jobs{{queue="{name}"}} 0.0' in body
    status, body = w.get("/active")
    assert status == 200
    assert json.loads(body) == {"active": 0, "queues": {name: 0}, "draining": False}
    # structured logs: every line is JSON; at debug each completion is logged with the job id
    lines = [json.loads(line) for line in w.logs().splitlines() if line.strip()]
    completed = [x for x in lines if x["message"] == "job completed"]
    assert {x["job_id"] for x in completed} == {j.id for j in jobs}


async def test_info_logs_a_summary_per_queue_not_a_line_per_job(
    start_worker: Any, queues: Any
) -> None:
    ok, bad = _qname("sum-ok"), _qname("sum-bad")
    w = start_worker(
        "--queue",
        ok,
        "--queue",
        bad,
        "--processor",
        "bullflow_worker.processors:scripted",
        "--summary-interval",
        "0.5",
    )
    good_jobs = [await queues(ok).add("x", {"i": i}) for i in range(7)]
    bad_job = await queues(bad).add("x", {"fail": "bad on purpose"})
    for job in good_jobs:
        assert await _wait_state(queues(ok), job.id, {"completed", "failed"}) == "completed"
    assert await _wait_state(queues(bad), bad_job.id, {"completed", "failed"}) == "failed"

    def summed() -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for line in w.logs().splitlines():
            record = json.loads(line)
            if record["message"] == "jobs processed":
                done, failed = totals.get(record["queue"], (0, 0))
                totals[record["queue"]] = (done + record["completed"], failed + record["failed"])
        return totals

    _wait(lambda: summed() == {ok: (7, 0), bad: (0, 1)}, 10, "summary lines")
    messages = [json.loads(line)["message"] for line in w.logs().splitlines()]
    assert "job completed" not in messages  # that line is at debug
    assert messages.count("job failed") == 1  # a failure is a line of its own, at warning


async def test_failing_processor_marks_job_failed(start_worker: Any, queues: Any) -> None:
    name = _qname("fail")
    q = queues(name)
    w = start_worker("--queue", name, "--processor", "bullflow_worker.processors:fail")
    job = await q.add("boom", {"reason": "kaput on purpose"})
    assert await _wait_state(q, job.id, {"completed", "failed"}) == "failed"
    failed = await Job.fromId(q, job.id)
    assert failed is not None
    assert failed.failedReason == "kaput on purpose"
    _wait(
        lambda: f'bullflow_worker_jobs_failed_total{{queue="{name}"}} 1.0' in w.get("/metrics")[1],
        5,
        "failed counter",
    )


async def test_flow_parent_sums_children(
    start_worker: Any, queues: Any, worker_redis_url: str
) -> None:
    parents, children = _qname("parents"), _qname("children")
    pq, cq = queues(parents), queues(children)
    start_worker(
        "--queue",
        parents,
        "--queue",
        children,
        "--processor",
        "bullflow_worker.processors:sum_children",
    )
    flow = FlowProducer({"connection": worker_redis_url})
    try:
        tree = await flow.add(
            {
                "name": "total",
                "queueName": parents,
                "data": {"value": 1},
                "children": [
                    {"name": "a", "queueName": children, "data": {"value": 2}},
                    {"name": "b", "queueName": children, "data": {"value": 39}},
                ],
            }
        )
    finally:
        await flow.close()
    assert tree is not None
    parent_id = tree["job"].id
    assert await _wait_state(pq, parent_id, {"completed", "failed"}) == "completed"
    parent = await Job.fromId(pq, parent_id)
    assert parent is not None
    assert parent.returnvalue == 42
    for child in tree["children"]:
        assert await cq.getJobState(child["job"].id) == "completed"


HELD_PROCESSOR = """
import asyncio, pathlib, time

async def held(job):
    release = pathlib.Path(job.data["release"])
    deadline = time.monotonic() + 120
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} was never created")
        await asyncio.sleep(0.05)
    return job.data
"""


async def test_sigterm_drains_in_flight_job(start_worker: Any, queues: Any, tmp_path: Path) -> None:
    name = _qname("drain")
    q = queues(name)
    active_file = tmp_path / "active.json"
    # The in-flight job runs until the test releases it, not for a time "long enough" to see
    # the drain: the worker is still draining whenever the checks below happen.
    (tmp_path / "held_proc.py").write_text(HELD_PROCESSOR)
    release = tmp_path / "release"
    w = start_worker(
        "--queue",
        name,
        "--processor",
        "held_proc:held",
        "--active-file",
        str(active_file),
        env={"PYTHONPATH": str(tmp_path)},
    )
    job = await q.add("slow", {"release": str(release), "tag": "in-flight"})
    _wait(lambda: json.loads(w.get("/active")[1])["active"] == 1, 30, "job to become active")
    assert json.loads(active_file.read_text())["active"] == 1

    w.proc.send_signal(signal.SIGTERM)
    _wait(lambda: w.get("/readyz")[0] == 503, 30, "/readyz to report draining")
    assert json.loads(w.get("/active")[1])["draining"] is True
    # a job enqueued while draining must not be picked up (it stays for another worker)
    late = await q.add("late", {"seconds": 0})
    assert w.proc.poll() is None, w.logs()  # it waits for its job
    release.write_text("done\n")

    rc = await asyncio.to_thread(w.proc.wait, 30)
    assert rc == 0, w.logs()
    assert await q.getJobState(job.id) == "completed"
    done = await Job.fromId(q, job.id)
    assert done is not None
    assert done.returnvalue == {"release": str(release), "tag": "in-flight"}
    assert await q.getJobState(late.id) == "waiting"
    assert json.loads(active_file.read_text()) == {
        "active": 0,
        "queues": {name: 0},
        "draining": True,
    }
    msgs = [json.loads(x)["message"] for x in w.logs().splitlines() if x.strip()]
    assert "draining" in msgs
    assert msgs[-1] == "worker stopped"
    # the last summary counts the job finished while draining
    summary = json.loads(w.logs().splitlines()[-2])
    assert (summary["message"], summary["queue"], summary["completed"]) == (
        "jobs processed",
        name,
        1,
    )

    # the job left behind is processed by the next worker: nothing lost
    start_worker("--queue", name, "--processor", "bullflow_worker.processors:sleep")
    assert await _wait_state(q, late.id, {"completed", "failed"}) == "completed"


async def test_second_signal_forces_exit(start_worker: Any, queues: Any) -> None:
    name = _qname("force")
    q = queues(name)
    w = start_worker("--queue", name, "--processor", "bullflow_worker.processors:sleep")
    job = await q.add("slow", {"seconds": 60})
    _wait(lambda: json.loads(w.get("/active")[1])["active"] == 1, 10, "job to become active")
    w.proc.send_signal(signal.SIGTERM)
    _wait(lambda: w.get("/readyz")[0] == 503, 30, "draining")
    w.proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(w.proc.wait, 10)
    assert rc == 128 + signal.SIGTERM, w.logs()
    # the abandoned job is still active (its lock expires, then stalled-job recovery)
    assert await q.getJobState(job.id) == "active"


async def test_sigterm_when_idle_exits_zero_quickly(start_worker: Any, queues: Any) -> None:
    name = _qname("idle")
    queues(name)
    w = start_worker("--queue", name, "--processor", "bullflow_worker.processors:echo")
    started = time.monotonic()
    w.proc.send_signal(signal.SIGINT)
    rc = await asyncio.to_thread(w.proc.wait, 15)
    assert rc == 0, w.logs()
    assert time.monotonic() - started < 5


async def test_exactly_once_under_concurrency(
    start_worker: Any, queues: Any, tmp_path: Path
) -> None:
    name = _qname("once")
    q = queues(name)
    exec_log = tmp_path / "exec.log"
    env = {"BULLFLOW_EXEC_LOG": str(exec_log)}
    for _ in range(2):
        start_worker(
            "--queue",
            name,
            "--processor",
            "bullflow_worker.processors:count_executions",
            "--concurrency",
            "5",
            env=env,
        )
    jobs = [await q.add("n", {"i": i}) for i in range(40)]
    for job in jobs:
        assert await _wait_state(q, job.id, {"completed", "failed"}) == "completed"
    executed = exec_log.read_text().split()
    assert sorted(executed, key=int) == sorted((j.id for j in jobs), key=int)


async def test_sync_processor_with_token_runs_in_thread(
    start_worker: Any, queues: Any, tmp_path: Path
) -> None:
    mod = tmp_path / "my_sync_proc.py"
    mod.write_text(
        "import threading, time\n"
        "def handle(job, token):\n"
        "    time.sleep(0.2)\n"
        "    return {'thread': threading.current_thread().name,\n"
        "            'has_token': bool(token), 'x': job.data['x'] * 2}\n"
    )
    name = _qname("sync")
    q = queues(name)
    start_worker(
        "--queue", name, "--processor", "my_sync_proc:handle", env={"PYTHONPATH": str(tmp_path)}
    )
    job = await q.add("s", {"x": 21})
    assert await _wait_state(q, job.id, {"completed", "failed"}) == "completed"
    done = await Job.fromId(q, job.id)
    assert done is not None
    assert done.returnvalue["x"] == 42
    assert done.returnvalue["has_token"] is True
    assert done.returnvalue["thread"] != "MainThread"


def test_processor_import_error_exits_nonzero(worker_redis_url: str) -> None:
    res = subprocess.run(
        [
            str(BIN),
            "--queue",
            "q",
            "--processor",
            "bullflow_worker.nope:echo",
            "--redis-url",
            worker_redis_url,
            "--http-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip() == (
        "bullflow-worker: error: cannot load processor 'bullflow_worker.nope:echo': "
        "module 'bullflow_worker.nope' not found"
    )


def test_redis_url_from_secret_file(worker_redis_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(worker_redis_url + "\n")
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(BIN),
            "--queue",
            "q",
            "--processor",
            "bullflow_worker.processors:echo",
            "--http-port",
            str(port),
        ],
        env={
            **os.environ,
            "BULLFLOW_REDIS_URL_FILE": str(secret),
            "REDIS_URL": "redis://127.0.0.1:1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        _wait(ready, 20, "worker ready using BULLFLOW_REDIS_URL_FILE")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
