"""`kubectl bullflow`: a kubectl plugin for bullflow Flows.

    kubectl bullflow tree FLOW [--watch [--forever]] [--ascii]   the Flow as a tree of its jobs
    kubectl bullflow list [-A]                 Flows with phase, progress, age and duration
    kubectl bullflow retry FLOW [--node PATH_OR_NAME ...] [--reset-attempts] [--wait]
    kubectl bullflow stop FLOW [--wait]        remove the jobs not started; running ones finish
    kubectl bullflow resubmit FLOW [--name NAME]   a new Flow with the same spec runs it all again
    kubectl bullflow trigger CRONFLOW          run a CronFlow now (a Flow CRONFLOW-manual-xxxxx)

`tree cronflow/NAME` draws the last run of a CronFlow.

Every command takes -n NAMESPACE, --context and --kubeconfig as kubectl does. retry and stop
write annotations the operator acts on (bullflow.io/retry, bullflow.io/stop).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from .operations import OperationError

# Re-exported: the rendering is what tests and scripts import from the plugin.
from .tree import format_duration, render_tree

__all__ = ["format_duration", "main", "parse_args", "render_tree"]
DEFAULT_WAIT_SECONDS = 300


def _common(
    parser: argparse.ArgumentParser, flow: bool = True, what: str = "the Flow's name"
) -> None:
    if flow:
        parser.add_argument("flow", help=what)
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="the Flow's namespace (default: the context's, else default)",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", default=None, help="kubeconfig context")


def _wait(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait until {what}")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help=f"seconds --wait waits (default {DEFAULT_WAIT_SECONDS})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl bullflow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bullflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    tree = sub.add_parser("tree", help="print a Flow as a tree of its jobs and their states")
    _common(tree, what="the Flow's name, or cronflow/NAME for a CronFlow's last run")
    tree.add_argument("--ascii", action="store_true", help="ASCII symbols and lines only")
    tree.add_argument(
        "-w", "--watch", action="store_true", help="draw it again on each change until it ends"
    )
    tree.add_argument("--forever", action="store_true", help="with --watch: do not stop at the end")
    listing = sub.add_parser("list", help="list Flows with phase, progress, age and duration")
    _common(listing, flow=False)
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="in all namespaces")
    retry = sub.add_parser("retry", help="run a Failed or Stopped Flow again from its failures")
    _common(retry)
    retry.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="PATH_OR_NAME",
        help="retry only this node (a path like 0.1, or a job name); repeatable",
    )
    retry.add_argument(
        "--reset-attempts", action="store_true", help="the retried jobs get all their attempts"
    )
    _wait(retry, "the operator applied or refused the retry")
    stop = sub.add_parser("stop", help="stop a Flow: jobs not started are removed")
    _common(stop)
    _wait(stop, "the flow is Stopped")
    resubmit = sub.add_parser("resubmit", help="create a new Flow with the same spec")
    _common(resubmit)
    resubmit.add_argument("--name", default=None, help="its name (default: generated, FLOW-xxxxx)")
    trigger = sub.add_parser("trigger", help="run a CronFlow now, as kubectl create job --from")
    trigger.add_argument("cronflow", help="the CronFlow's name")
    _common(trigger, flow=False)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "tree" and args.forever and not args.watch:
        parser.error("--forever needs --watch")
    if args.command == "list" and args.all_namespaces and args.namespace:
        parser.error("-A and -n exclude each other")
    if getattr(args, "timeout", 1) <= 0:
        parser.error("--timeout must be more than 0")
    return args


def _api_error(args: argparse.Namespace, status: int | None, reason: str, body: str | None) -> str:
    import json

    flow = getattr(args, "flow", None)
    if status == 404 and flow:
        return f"flow {flow!r} not found"
    try:
        message = json.loads(body or "").get("message") or reason
    except (TypeError, ValueError, AttributeError):
        message = reason
    return f"{status} {message}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from kubernetes.client.exceptions import ApiException

    from .commands import COMMANDS
    from .kube import FlowGone, Kube

    kube = Kube(args.kubeconfig, args.context)
    try:
        return COMMANDS[args.command](kube, args, sys.stdout)
    except OperationError as err:
        print(f"Error: {err}", file=sys.stderr)
    except FlowGone as err:
        print(f"Error: flow {err} was deleted", file=sys.stderr)
    except ApiException as err:
        error = _api_error(args, err.status, str(err.reason), err.body)
        print(f"Error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    finally:
        kube.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
