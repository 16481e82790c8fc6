"""The worker runtime: Redis readiness check, bullmq Workers, probes, graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bullmq import Worker
from bullmq.custom_errors import DelayedError, WaitingChildrenError
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from bullflow_worker.bullmq_compat import (
    blocking_read_timeout,
    cap_reconnect_backoff,
    fit_blocking_read_timeout,
    retry_completion_writes,
    use_own_blocking_client,
)
from bullflow_worker.errors import StartupError
from bullflow_worker.httpserver import HttpServer
from bullflow_worker.job_tally import JobTally
from bullflow_worker.loader import Processor
from bullflow_worker.metrics import Metrics
from bullflow_worker.redis_address import RedisAddress, parse_redis_address, redact_redis_url
from bullflow_worker.redis_clients import async_client

log = logging.getLogger("bullflow_worker")


class StopRequested(Exception):
    """A shutdown signal arrived before the workers started."""


@dataclass
class Settings:
    queues: list[str]
    processor_spec: str
    redis_url: str
    concurrency: int = 1
    prefix: str = "bull"
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    connect_timeout: float = 30.0
    drain_timeout: float = 0.0
    active_file: str | None = None
    activity_key: str | None = None
    activity_interval: float = 2.0
    worker_name: str | None = None
    summary_interval: float = 30.0
    extra_opts: dict[str, Any] = field(default_factory=dict)


def server_version(info: dict[str, Any]) -> str:
    """`redis_version` from INFO server: one node's reply, or a cluster client's replies by
    node (`{"host:port": {...}}`)."""
    if "redis_version" in info:
        return str(info["redis_version"])
    versions = sorted(
        {
            str(v["redis_version"])
            for v in info.values()
            if isinstance(v, dict) and v.get("redis_version")
        }
    )
    return ", ".join(versions) or "unknown"


async def wait_for_redis(url: str, timeout: float, stop: asyncio.Event) -> str:
    """Ping Redis until it answers or ``timeout`` seconds pass; return the server version.

    Through the same client factory the workers use: on Sentinel this asks the sentinels for
    the master (an unknown master name is retried like an unreachable Redis), on Cluster it
    discovers the nodes from the seeds."""
    shown = redact_redis_url(url)
    address = parse_redis_address(url)
    deadline = time.monotonic() + timeout
    delay = 0.25
    attempt = 0
    last_error = "no attempt made"
    while True:
        attempt += 1
        client = async_client(
            address, socket_connect_timeout=min(5.0, max(timeout, 0.5)), socket_timeout=5.0
        )
        try:
            await client.ping()
            return server_version(await client.info("server"))
        except AuthenticationError as exc:
            raise StartupError(
                f"cannot connect to Redis at {shown}: authentication failed: {exc}"
            ) from None
        except ResponseError as exc:
            raise StartupError(f"cannot connect to Redis at {shown}: {exc}") from None
        except (RedisError, OSError) as exc:
            last_error = str(exc) or type(exc).__name__
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StartupError(
                f"cannot connect to Redis at {shown} after {attempt} attempts "
                f"({timeout:g}s): {last_error}"
            )
        log.warning(
            "redis not reachable yet, retrying",
            extra={"url": shown, "attempt": attempt, "error": last_error},
        )
        if await wait_set(stop, min(delay, remaining)):
            raise StopRequested
        delay = min(delay * 2, 5.0)


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait at most `timeout` seconds for `event`; True if it is set. Not `asyncio.wait_for`:
    on Python 3.11 that swallows a cancel landing as the event fires, and a loop around it
    would then never end."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()


class WorkerApp:
    def __init__(self, settings: Settings, processor: Processor) -> None:
        self.settings = settings
        self.processor = processor
        self.metrics = Metrics(active_file=settings.active_file)
        self.workers: dict[str, Worker] = {}
        self.run_tasks: dict[str, asyncio.Task[Any]] = {}
        self.stop_event = asyncio.Event()
        self.signals_received = 0
        self.state = "starting"
        self._durations: dict[tuple[str, str], float] = {}
        self._tally = JobTally()
        self._activity_changed = asyncio.Event()

    # -- readiness -------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        if self.state != "running":
            return False, self.state
        dead = [q for q, t in self.run_tasks.items() if t.done()]
        if dead:
            return False, f"worker stopped for queue(s): {', '.join(dead)}"
        return True, "ready"

    # -- signals ---------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        self.signals_received += 1
        name = signal.Signals(signum).name
        if self.signals_received == 1:
            log.info("signal received, draining", extra={"signal": name})
            self.stop_event.set()
            return
        log.warning("second signal received, exiting immediately", extra={"signal": name})
        logging.shutdown()
        sys.stderr.flush()
        os._exit(128 + signum)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    # -- processing ------------------------------------------------------------
    def _instrument(self, queue: str) -> Processor:
        proc = self.processor
        metrics = self.metrics

        async def run(job: Any, token: str) -> Any:
            metrics.job_started(queue)
            self._activity_changed.set()
            started = time.monotonic()
            status = "failed"
            try:
                result = await proc(job, token)
                status = "completed"
                return result
            except (DelayedError, WaitingChildrenError):
                status = "deferred"
                raise
            except asyncio.CancelledError:
                status = "cancelled"
                raise
            finally:
                elapsed = time.monotonic() - started
                self._durations[(queue, str(job.id))] = elapsed
                metrics.job_finished(queue, status, elapsed)
                self._activity_changed.set()

        return run

    def _attach_events(self, queue: str, worker: Worker) -> None:
        # The queue's counters, looked up once: `labels()` on every job is a per-job cost.
        completed_total = self.metrics.completed.labels(queue)
        failed_total = self.metrics.failed.labels(queue)
        tally = self._tally

        def completed(job: Any, _result: Any = None, *_: Any) -> None:
            completed_total.inc()
            tally.completed(queue)
            # At info the completions are summed up by _log_summaries, not logged one by one.
            if log.isEnabledFor(logging.DEBUG):
                log.debug("job completed", extra=self._job_fields(queue, job))
            else:
                self._durations.pop((queue, str(getattr(job, "id", None))), None)

        def failed(job: Any, err: Any = None, *_: Any) -> None:
            failed_total.inc()
            tally.failed(queue)
            fields = self._job_fields(queue, job)
            fields["error"] = f"{type(err).__name__}: {err}"
            log.warning("job failed", extra=fields)

        def error(err: Any = None, job: Any = None, *_: Any) -> None:
            fields: dict[str, Any] = {"queue": queue, "error": f"{type(err).__name__}: {err}"}
            if job is not None:
                fields["job_id"] = getattr(job, "id", None)
            log.error("worker error", extra=fields)

        def stalled(job_id: Any = None, *_: Any) -> None:
            log.warning("job stalled", extra={"queue": queue, "job_id": job_id})

        worker.on("completed", completed)
        worker.on("failed", failed)
        worker.on("error", error)
        worker.on("stalled", stalled)

    def _job_fields(self, queue: str, job: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "queue": queue,
            "job_id": getattr(job, "id", None),
            "job_name": getattr(job, "name", None),
            "attempts_made": getattr(job, "attemptsMade", None),
        }
        duration = self._durations.pop((queue, str(fields["job_id"])), None)
        if duration is not None:
            fields["duration_s"] = round(duration, 4)
        return fields

    # -- lifecycle ------------------------------------------------------------
    async def run(self) -> int:
        s = self.settings
        self.install_signal_handlers()
        http: HttpServer | None = None
        if s.http_port:
            http = HttpServer(s.http_host, s.http_port, self.metrics, self.readiness)
            try:
                await http.start()
            except OSError as exc:
                raise StartupError(
                    f"cannot listen on {s.http_host}:{s.http_port}: {exc.strerror or exc}"
                ) from None
        try:
            return await self._run_workers()
        finally:
            if http is not None:
                await http.stop()

    async def _run_workers(self) -> int:
        s = self.settings
        self.state = "connecting"
        try:
            version = await wait_for_redis(s.redis_url, s.connect_timeout, self.stop_event)
        except StopRequested:
            log.info("stopped before connecting to redis")
            return 0
        log.info(
            "connected to redis",
            extra={
                "url": redact_redis_url(s.redis_url),
                "topology": self.address.topology,
                "version": version,
            },
        )

        for queue in s.queues:
            worker = self._make_worker(queue)
            self._attach_events(queue, worker)
            self.metrics.register_queue(queue)
            self.workers[queue] = worker
            self.run_tasks[queue] = asyncio.create_task(worker.run(), name=f"worker:{queue}")
        self.state = "running"
        log.info(
            "worker started",
            extra={
                "queues": s.queues,
                "processor": s.processor_spec,
                "concurrency": s.concurrency,
                "prefix": s.prefix,
            },
        )

        reporter = (
            asyncio.create_task(self._report_activity(s.activity_key), name="activity")
            if s.activity_key
            else None
        )
        summaries = (
            asyncio.create_task(self._log_summaries(s.summary_interval), name="summaries")
            if s.summary_interval
            else None
        )
        try:
            return await self._wait_and_drain()
        finally:
            if summaries is not None:
                summaries.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await summaries
            if reporter is not None:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
                await self._clear_activity(s.activity_key or "")

    @functools.cached_property
    def address(self) -> RedisAddress:
        return parse_redis_address(self.settings.redis_url)

    def _make_worker(self, queue: str) -> Worker:
        """A bullmq Worker for `queue` on the configured Redis, with bullmq_compat's fixes.

        Standalone: bullmq builds its two clients from the URL, as it always has. Sentinel and
        Cluster: bullmq cannot build those from a URL, so it gets clients from the factory
        (the Sentinel one asks the sentinels for the master again after a failover, the
        Cluster one follows MOVED), one for commands and one of its own for BZPOPMIN.
        """
        s = self.settings
        address = self.address
        standalone = address.topology == "standalone"
        opts: dict[str, Any] = {
            # decode_responses: what bullmq sets on the clients it builds; its scripts expect str.
            "connection": s.redis_url
            if standalone
            else async_client(address, decode_responses=True),
            "prefix": s.prefix,
            "concurrency": s.concurrency,
            "autorun": False,
            **s.extra_opts,
        }
        if s.worker_name:
            opts["name"] = s.worker_name
        worker = Worker(queue, self._instrument(queue), opts)
        if not standalone:
            blocking = async_client(
                address, decode_responses=True, socket_timeout=blocking_read_timeout(worker)
            )
            use_own_blocking_client(worker, blocking)
        else:
            # Without this an idle worker misses new jobs for up to 20 s (redis-py 8's 5 s
            # read timeout cuts bullmq's 5 s BZPOPMIN short); see bullmq_compat.
            fit_blocking_read_timeout(worker)
        # Without this it may sleep 20 s after Redis is back (see bullmq_compat).
        cap_reconnect_backoff(worker)
        # Without this a failover fails jobs that succeeded (see bullmq_compat).
        retry_completion_writes(worker)
        return worker

    async def _log_summaries(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._log_summary()

    def _log_summary(self) -> None:
        """One info line per queue that finished jobs since the last line."""
        for tally in self._tally.take():
            log.info(
                "jobs processed",
                extra={"queue": tally.queue, "completed": tally.completed, "failed": tally.failed},
            )

    async def _report_activity(self, key: str) -> None:
        """Keep `key` = active-job count (TTL 3 intervals) while running and draining.

        The operator reads it to set controller.kubernetes.io/pod-deletion-cost, so a scale-down
        removes idle workers first. Best effort: Redis errors are logged and retried.
        """
        interval = self.settings.activity_interval
        ttl = max(1, int(interval * 3 + 0.999))
        client = async_client(self.address, socket_timeout=5.0)
        last: int | None = None
        last_write = 0.0
        try:
            while True:
                self._activity_changed.clear()
                active = int(self.metrics.active_snapshot()["active"])
                now = time.monotonic()
                if active != last or now - last_write >= interval:
                    try:
                        await client.set(key, active, ex=ttl)
                        last, last_write = active, now
                    except (RedisError, OSError) as exc:
                        log.debug("activity report failed", extra={"error": str(exc)})
                await wait_set(self._activity_changed, 0.5)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _clear_activity(self, key: str) -> None:
        client = async_client(self.address, socket_timeout=2.0)
        try:
            await client.delete(key)
        except (RedisError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _wait_and_drain(self) -> int:
        stop_waiter = asyncio.create_task(self.stop_event.wait())
        await asyncio.wait(
            [stop_waiter, *self.run_tasks.values()], return_when=asyncio.FIRST_COMPLETED
        )
        crashed = [q for q, t in self.run_tasks.items() if t.done()]
        if not self.stop_event.is_set():
            stop_waiter.cancel()
            for q in crashed:
                task = self.run_tasks[q]
                exc = None if task.cancelled() else task.exception()
                log.error(
                    "worker loop stopped unexpectedly",
                    extra={"queue": q, "error": repr(exc) if exc else "exited"},
                )
        code = await self.drain()
        return 1 if crashed and not self.stop_event.is_set() else code

    async def drain(self) -> int:
        """Stop fetching jobs, wait for the jobs in hand, close connections."""
        self.state = "draining"
        self.metrics.set_draining()
        active = self.metrics.active_snapshot()["active"]
        log.info("draining", extra={"active_jobs": active})

        async def close_one(worker: Worker) -> None:
            # pause() stops fetching and waits for in-flight jobs (including a fetch
            # that was racing with the signal); close() then releases connections.
            await worker.pause()
            await worker.close()

        closers = [asyncio.create_task(close_one(w)) for w in self.workers.values()]
        code = 0
        if closers:
            timeout = self.settings.drain_timeout or None
            _, pending = await asyncio.wait(closers, timeout=timeout)
            if pending:
                left = self.metrics.active_snapshot()["active"]
                log.error(
                    "drain timeout, abandoning jobs (they will be retried as stalled)",
                    extra={"drain_timeout_s": self.settings.drain_timeout, "active_jobs": left},
                )
                code = 1
                for w in self.workers.values():
                    await w.close(force=True)
                await asyncio.wait(closers, timeout=10)
            for task in closers:
                if task.done() and not task.cancelled() and task.exception():
                    log.error("error while closing worker", extra={"error": repr(task.exception())})
        if self.run_tasks:
            await asyncio.wait(list(self.run_tasks.values()), timeout=10)
        self.state = "stopped"
        self._log_summary()  # the jobs finished since the last summary, the drained ones too
        log.info("worker stopped", extra={"exit_code": code})
        return code
