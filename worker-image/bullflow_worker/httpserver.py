"""A tiny asyncio HTTP/1.0 server for probes and metrics (no extra dependencies).

Endpoints: /healthz, /readyz, /metrics, /active.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST

from bullflow_worker.errors import UsageError
from bullflow_worker.metrics import Metrics

log = logging.getLogger("bullflow_worker.http")

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def listen_error(host: str, port: int, err: OSError) -> str:
    reason = "address in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
    return (
        f"cannot listen on {host}:{port} for HTTP probes and metrics ({reason.lower()}); "
        "pass --http-port with a free port or 0 to disable"
    )


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        readiness: Callable[[], tuple[bool, str]],
    ) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.readiness = readiness
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; a port that cannot be had is a configuration error (exit 2, one line)."""
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as err:
            raise UsageError(listen_error(self.host, self.port, err)) from None
        sock = self._server.sockets[0].getsockname()
        log.info("http server listening", extra={"address": f"{sock[0]}:{sock[1]}"})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            ready, reason = self.readiness()
            return (200 if ready else 503), "text/plain; charset=utf-8", f"{reason}\n".encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self.metrics.render()
        if path == "/active":
            body = json.dumps(self.metrics.active_snapshot()).encode() + b"\n"
            return 200, "application/json", body
        return 404, "text/plain; charset=utf-8", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request_line = await reader.readline()
            while True:  # drain headers
                async with asyncio.timeout(10):
                    line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request_line.decode("latin-1").split()
            if len(parts) < 2:
                return
            method, target = parts[0].upper(), parts[1]
            path = target.split("?", 1)[0]
            status: int
            ctype: str
            body: bytes
            if method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain; charset=utf-8", b"method not allowed\n"
            else:
                status, ctype, body = self._route(path)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # never let a bad request kill the worker
            log.warning("http request failed", extra={"error": repr(exc)})
        finally:
            try:
                writer.close()
                await writer.wait_closed()
            except Exception:
                pass
