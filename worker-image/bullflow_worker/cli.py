"""Command line entry point: ``bullflow-worker``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from bullflow_worker import __version__
from bullflow_worker.cluster_prefix import cluster_prefix_problem
from bullflow_worker.config import resolve_redis_url
from bullflow_worker.errors import UsageError, WorkerError
from bullflow_worker.loader import load_processor
from bullflow_worker.logs import setup_logging
from bullflow_worker.redis_address import parse_redis_address
from bullflow_worker.runtime import Settings, WorkerApp

PROG = "bullflow-worker"

EPILOG = """\
Redis connection: --redis-url, else the file named by $BULLFLOW_REDIS_URL_FILE
(e.g. a mounted Secret), else $BULLFLOW_REDIS_URL, else $REDIS_URL.
Forms (docs/redis.md):
  redis://[[user]:password@]host[:port][/db]        one Redis; rediss:// for TLS
  unix:///path/to/redis.sock                        one Redis on a local socket
  redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]...]/MASTER[/db]
      [?sentinelUsername=U&sentinelPassword=P]      Sentinel (port 26379 by default);
                                                    rediss+sentinel:// for TLS
  redis+cluster://[[user]:password@]host1[:port1][,host2[:port2]...]
                                                    Redis Cluster seed nodes (port 6379
                                                    by default); rediss+cluster:// for TLS
On Redis Cluster the --prefix needs a hash tag, e.g. --prefix '{bull}'.

Exit codes: 0 drained cleanly, 1 runtime failure (e.g. Redis unreachable),
2 usage/configuration error. SIGTERM/SIGINT drain in-flight jobs; a second signal
exits immediately.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _name(text: str) -> str:
    if not text or text.strip() != text or ":" in text:
        raise argparse.ArgumentTypeError(
            f"invalid name {text!r}: must be non-empty, without ':' or surrounding spaces"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    """The `bullflow-worker` command line.

    Long because: one add_argument per option, each with its help text; split across
    functions it would read worse, not better.
    """
    p = _Parser(
        prog=PROG,
        description="Run a BullMQ worker (Python bullmq) for one or more queues.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--queue",
        "-q",
        action="append",
        required=True,
        type=_name,
        metavar="NAME",
        help="queue to consume (repeatable: one bullmq Worker per queue)",
    )
    p.add_argument(
        "--processor",
        "-p",
        required=True,
        metavar="MODULE:FUNCTION",
        help="processor callable, sync or async, taking (job) or (job, token)",
    )
    p.add_argument(
        "--concurrency",
        "-c",
        type=_positive_int,
        default=1,
        metavar="N",
        help="jobs processed in parallel per queue (default: 1)",
    )
    p.add_argument(
        "--prefix",
        type=_name,
        default="bull",
        help="BullMQ key prefix (default: bull; on Redis Cluster one with a hash tag: {bull})",
    )
    p.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis URL: redis://, rediss://, unix://, redis+sentinel://, redis+cluster:// "
        "(overrides the environment; forms below)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="give up if Redis is unreachable at startup after this long (default: 30)",
    )
    p.add_argument(
        "--drain-timeout",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, abandon in-flight jobs after this long; 0 waits forever (default)",
    )
    p.add_argument(
        "--http-port",
        type=_port,
        default=8080,
        metavar="PORT",
        help="port for /healthz /readyz /metrics /active; 0 disables (default: 8080)",
    )
    p.add_argument(
        "--http-host",
        default="0.0.0.0",
        metavar="ADDR",
        help="address for the HTTP server (default: 0.0.0.0)",
    )
    p.add_argument(
        "--active-file",
        metavar="PATH",
        help="also write the active-job count as JSON to this file on every change",
    )
    p.add_argument(
        "--activity-key",
        metavar="KEY",
        help="also keep the active-job count in this Redis key (TTL-refreshed, deleted on exit);"
        " the bullflow operator reads it to set pod-deletion-cost before scaling down",
    )
    p.add_argument("--worker-name", metavar="NAME", help="worker name shown in Redis CLIENT LIST")
    p.add_argument(
        "--summary-interval",
        type=_non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="log the jobs completed and failed per queue this often, at info (each job is "
        "logged at debug, a failure at warning); 0 disables (default: 30)",
    )
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
    )
    p.add_argument("--version", action="version", version=f"bullflow {__version__}")
    return p


def parse_settings(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    args = build_parser().parse_args(argv)
    queues = list(dict.fromkeys(args.queue))  # de-duplicate, keep order
    redis_url = resolve_redis_url(args.redis_url)
    if parse_redis_address(redis_url).topology == "cluster":
        problem = cluster_prefix_problem(args.prefix, "--prefix")
        if problem:
            raise UsageError(problem)
    settings = Settings(
        queues=queues,
        processor_spec=args.processor,
        redis_url=redis_url,
        concurrency=args.concurrency,
        prefix=args.prefix,
        http_host=args.http_host,
        http_port=args.http_port,
        connect_timeout=args.connect_timeout,
        drain_timeout=args.drain_timeout,
        active_file=args.active_file,
        activity_key=args.activity_key,
        worker_name=args.worker_name,
        summary_interval=args.summary_interval,
    )
    return args, settings


def _lighter_log_records() -> None:
    """Skip the LogRecord fields no formatter of ours prints (logs.py: no file, line, thread or
    process): the logging docs' "Optimization" switches. A failed job (and at debug every
    job) is a log line, so each record's cost is a per-job cost."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, settings = parse_settings(argv)
        setup_logging(args.log_format, args.log_level)
        processor = load_processor(settings.processor_spec)
        _lighter_log_records()
        return asyncio.run(WorkerApp(settings, processor).run())
    except WorkerError as exc:
        logging.shutdown()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
