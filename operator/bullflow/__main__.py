"""`bullflow-operator`: run the operator (kopf) with explicit settings."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import signal
import sys
import tracemalloc
from pathlib import Path

import kopf
import prometheus_client
import uvloop


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bullflow-operator", description=__doc__)
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: run even if another operator is active",
    )
    parser.add_argument(
        "--peering", default="bullflow", help="kopf peering name for HA (one active operator)"
    )
    parser.add_argument(
        "--priority",
        default=None,
        help="kopf peering priority: an integer, or 'random' (one per process, so that the "
        "replicas of one Deployment never tie, which would pause them all)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=None,
        help="seconds a peer's heartbeat stays valid (kopf's default: 60); bounds failover",
    )
    parser.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9090, help="Prometheus /metrics port (0 disables)"
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .handlers import flow, lifecycle, workerpool  # noqa: F401 - registers
    from .kopf_compat import namespaces as kopf_namespaces
    from .redaction import install_log_redaction

    # Before anything logs: no log line (nor the Events kopf posts from them) repeats a Redis
    # password, whoever writes it.
    install_log_redaction()
    kopf_namespaces.install()

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
    if not args.verbose:
        # kopf logs two INFO lines for every handled object ("Handler ... succeeded", "Creation
        # is processed"): at hundreds of Flows per second that is noise and measurable CPU.
        # Warnings and errors (retries, failures) stay; --verbose brings everything back.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port)
    install_memory_dump()
    tune_garbage_collector()
    settings = kopf.OperatorSettings()
    if args.peering_lifetime:
        settings.peering.lifetime = args.peering_lifetime
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            kopf.operator(
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                standalone=args.standalone,
                **({} if args.standalone else {"peering_name": args.peering}),
                priority=peering_priority(args.priority),
                settings=settings,
                liveness_endpoint=args.liveness,
            )
        )
    return 0


# CPython's default (700, 10, 10) collects the young generation every 700 net allocations, so
# most objects of a burst (watch events, models, Redis commands: short-lived, but alive across a
# few awaits) got promoted, and the promotions kept forcing full collections over everything the
# operator holds, each a pause of the event loop. A much bigger young generation lets those
# objects die first: far fewer full collections, faster bursts and less operator CPU for big
# flows (make bench A/B with gc.callbacks; the numbers are in bench/results).
GC_THRESHOLDS = (50_000, 10, 10)


def tune_garbage_collector() -> None:
    """Bigger young generation; and the objects of start-up (modules, classes, kopf's registry)
    moved out of every collection's sight, since they live until exit anyway."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


def install_memory_dump() -> None:
    """With PYTHONTRACEMALLOC=<frames> set, SIGUSR2 writes the biggest allocation sites to
    stderr (or to $BULLFLOW_MEMORY_DUMP): where the operator's memory goes, on a live process."""
    if not tracemalloc.is_tracing():
        return

    def dump(*_: object) -> None:
        stats = tracemalloc.take_snapshot().statistics("traceback")
        total = sum(s.size for s in stats)
        lines = [f"traced: {total / 2**20:.1f} MiB in {len(stats)} sites"]
        for stat in stats[:40]:
            lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9d} blocks")
            lines.extend(f"    {frame}" for frame in stat.traceback.format()[-12:])
        text = "\n".join(lines) + "\n"
        target = os.environ.get("BULLFLOW_MEMORY_DUMP")
        if target:
            Path(target).write_text(text)
        else:
            sys.stderr.write(text)

    signal.signal(signal.SIGUSR2, dump)


def peering_priority(value: str | None) -> int | None:
    if value is None:
        return None
    if value == "random":
        return random.SystemRandom().randint(1, 2**31 - 1)
    try:
        return int(value)
    except ValueError:
        message = f"bullflow-operator: --priority must be an integer or 'random', not {value!r}"
        raise SystemExit(message) from None


if __name__ == "__main__":
    sys.exit(main())
