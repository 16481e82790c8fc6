"""A throwaway redis-server on a free loopback port, with stop/start on the same port for
outage tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from tests.harness.process import ManagedProcess, free_port, port_open, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


class RedisServer:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        detached: bool = False,
        binary: str = REDIS_SERVER,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port or free_port()
        self.detached = detached
        self.binary = binary
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self.proc is not None and self.proc.running():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The port may still be in TIME_WAIT/held briefly after a stop; redis sets SO_REUSEADDR.
        self.proc = ManagedProcess(
            "redis-server",
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ],
            self.log_path,
            detached=self.detached,
            stop_timeout=5,
        )
        self.proc.start()
        wait_for(
            lambda: _ping(self.port),
            15,
            f"redis-server :{self.port}",
            check=self.proc.check_running,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        wait_for(lambda: not port_open(self.port), 10, f"redis port {self.port} closed")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stops Redis (all data is lost: it does not persist) and starts it on the same port."""
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """`with redis.paused(): ...` — Redis is frozen (SIGSTOP) inside the block: connections
        hang instead of failing; data is kept. Resumed (SIGCONT) after the block."""
        assert self.proc is not None and self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """`with redis.outage(): ...` — Redis is down inside the block, back up after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()
