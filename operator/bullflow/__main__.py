"""`bullflow-operator`: run the operator (kopf) with explicit settings."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import os
import random
import signal
import socket
import sys
import tracemalloc
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

import kopf
import prometheus_client
import uvloop

from . import __version__, logs
from .peering import DEFAULT_NAME as DEFAULT_PEERING
from .peering import PeeringPlan, look_for_peering, plan_peering
from .redaction import describe_error

EPILOG = """\
kopf peering (one active operator among several): with --peering NAME the operator requires
the peering CRD (ClusterKopfPeering cluster-wide, KopfPeering with --namespace) and exits with
status 2 if the cluster does not serve it; it stays paused until the peering object NAME exists.
With neither --peering nor --standalone it peers as "bullflow" when the CRD and that object are
there, else it runs standalone and logs one warning (install the CRDs with
`kubectl apply -f crds/kopf-peerings.yaml`). --standalone never peers.

Exit status: 2 for a usage error, a port that cannot be listened on, or a missing peering CRD
with --peering; 1 if the Kubernetes API cannot be asked at start.
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The `bullflow-operator` command line.

    Long because: one add_argument per option, each with its help text.
    """
    parser = argparse.ArgumentParser(
        prog="bullflow-operator",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bullflow {__version__}")
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
        "--peering",
        default=None,
        metavar="NAME",
        help="kopf peering name for HA (one active operator); requires the peering CRD "
        f"(default: {DEFAULT_PEERING} if its CRD and object exist, else standalone)",
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
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text: time, level, [namespace/name], message; json: one object a line",
    )
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .handlers import cronflow, flow, lifecycle, workerpool  # noqa: F401 - registers
    from .kopf_compat import namespaces as kopf_namespaces
    from .redaction import install_log_redaction

    # Before anything logs: no log line (nor the Events kopf posts from them) repeats a Redis
    # password, whoever writes it.
    install_log_redaction()
    kopf_namespaces.install()
    configure_logging(args)
    check_liveness_port(args.liveness)
    if args.metrics_port:
        start_metrics(args.metrics_port)
    install_memory_dump()
    tune_garbage_collector()
    settings = kopf.OperatorSettings()
    if args.peering_lifetime:
        settings.peering.lifetime = args.peering_lifetime
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        plan = runner.run(decide_peering(args))
        runner.run(
            kopf.operator(
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                standalone=plan.name is None,
                peering_name=plan.name,  # kopf: a name makes peering mandatory
                priority=peering_priority(args.priority),
                settings=settings,
                liveness_endpoint=args.liveness,
            )
        )
    return 0


def configure_logging(args: argparse.Namespace) -> None:
    # kopf.configure sets the root level and handler (and quiets asyncio); logs.install then
    # gives that handler bullflow's format.
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logs.install(args.log_format)
    logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
    if not args.verbose:
        # kopf logs two INFO lines for every handled object ("Handler ... succeeded", "Creation
        # is processed"): at hundreds of Flows per second that is noise and measurable CPU.
        # Warnings and errors (retries, failures) stay; --verbose brings everything back.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


async def decide_peering(args: argparse.Namespace) -> PeeringPlan:
    """Peering or standalone (see peering.py); exits on a missing CRD with --peering."""
    found = None
    if not args.standalone:
        try:
            found = await look_for_peering(args.namespace, args.peering or DEFAULT_PEERING)
        except Exception as err:
            fail(
                f"bullflow-operator: cannot ask the Kubernetes API about peering: "
                f"{describe_error(err)}",
                status=1,
            )
    plan = plan_peering(args.standalone, args.peering, args.namespace, found)
    if plan.error:
        fail(plan.error)
    if plan.warning:
        logging.getLogger("bullflow.peering").warning(plan.warning)
    return plan


def fail(message: str, status: int = 2) -> NoReturn:
    """One line on stderr, no traceback, and exit."""
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(status)


def listen_error(where: str, what: str, err: OSError, hint: str) -> str:
    reason = "address in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
    return f"bullflow-operator: cannot listen on {where} for {what} ({reason.lower()}); {hint}"


def start_metrics(port: int) -> None:
    try:
        prometheus_client.start_http_server(port)
    except OSError as err:
        hint = "pass --metrics-port with a free port or 0 to disable"
        fail(listen_error(f":{port}", "metrics", err, hint))


def check_liveness_port(endpoint: str | None) -> None:
    """kopf opens the liveness endpoint inside its reactor, where a taken port ends in a
    traceback: try the address first (SO_REUSEADDR, as kopf's server binds)."""
    if not endpoint:
        return
    url = urlparse(endpoint)
    host, port = url.hostname or "0.0.0.0", url.port or 80
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as err:
        fail(listen_error(f"{host}:{port}", "liveness", err, "pass --liveness with a free port"))


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
