"""`bullflow-operator`: run the operator (kopf) with explicit settings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys

import kopf
import prometheus_client


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
    from .handlers import flow, lifecycle, workerpool  # noqa: F401 - registers the handlers

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port)
    settings = kopf.OperatorSettings()
    if args.peering_lifetime:
        settings.peering.lifetime = args.peering_lifetime
    asyncio.run(
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
