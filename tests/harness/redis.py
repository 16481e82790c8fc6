"""A throwaway redis-server on a free loopback port, with stop/start on the same port for
outage tests. It never persists by itself (`--save ""`): a stop loses the data, unless asked to
keep it (`stop(keep_data=True)` saves an RDB snapshot as it shuts down, and
`start(keep_data=True)` loads it back), as a Redis with persistence would."""

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


def _ping(port: int, password: str | None = None) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        if password is None:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
        s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = s.recv(256)
            if not chunk:
                return False
            reply += chunk
        return reply == b"+OK\r\n+PONG\r\n"


class RedisServer:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        detached: bool = False,
        binary: str = REDIS_SERVER,
        password: str | None = None,
        also_bind: tuple[str, ...] = (),
    ) -> None:
        """`password`: started with --requirepass; `url` then carries it. `also_bind`: more
        addresses to listen on besides 127.0.0.1 (the real node's pods reach Redis at its
        bridge address); `url_at(address)` names one."""
        self.workdir = Path(workdir).resolve()
        self.password = password
        self.also_bind = also_bind
        self.port = port or free_port()
        self.detached = detached
        self.binary = binary
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return self.url_at("127.0.0.1")

    def url_at(self, address: str) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}{address}:{self.port}/0"

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

    @property
    def dump_path(self) -> Path:
        return self.workdir / "dump.rdb"  # redis-server's default dbfilename, in --dir

    def start(self, keep_data: bool = False) -> None:
        """keep_data: load the snapshot the last `stop(keep_data=True)` saved; otherwise any
        snapshot is deleted first and Redis starts empty."""
        if self.proc is not None and self.proc.running():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not keep_data:
            self.dump_path.unlink(missing_ok=True)
        # The port may still be in TIME_WAIT/held briefly after a stop; redis sets SO_REUSEADDR.
        self.proc = ManagedProcess(
            "redis-server",
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *self.also_bind,
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
                *(["--requirepass", self.password] if self.password is not None else []),
            ],
            self.log_path,
            detached=self.detached,
            stop_timeout=5,
        )
        self.proc.start()
        wait_for(
            lambda: _ping(self.port, self.password),
            15,
            f"redis-server :{self.port}",
            check=self.proc.check_running,
        )

    def stop(self, keep_data: bool = False) -> None:
        """keep_data: `SHUTDOWN SAVE` (the snapshot is written as Redis exits, so no write made
        before it is lost), for `start(keep_data=True)`."""
        if keep_data:
            assert self.proc is not None and self.proc.proc is not None, "redis is not running"
            self._shutdown_save()
            self.proc.proc.wait(30)
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        wait_for(lambda: not port_open(self.port), 10, f"redis port {self.port} closed")

    def restart(self, down_seconds: float = 0.0, keep_data: bool = False) -> None:
        """Stops Redis and starts it on the same port: empty, or with keep_data, with every key
        it had when it stopped."""
        self.stop(keep_data=keep_data)
        if down_seconds:
            time.sleep(down_seconds)
        self.start(keep_data=keep_data)

    def _shutdown_save(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=30)
        try:
            client.shutdown(save=True)  # returns once the server has closed the connection
        finally:
            client.close()

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
    def outage(self, keep_data: bool = False) -> Iterator[None]:
        """`with redis.outage(): ...` — Redis is down inside the block, back up after it (empty,
        or with keep_data, with what it had)."""
        self.stop(keep_data=keep_data)
        try:
            yield
        finally:
            self.start(keep_data=keep_data)
