"""The real worker runtime (`bullflow-worker`: Python bullmq, processor `scripted`) with short
BullMQ lock and stall settings, for the worker-SIGKILL fault: with BullMQ's defaults (lock 30 s,
stall check every 30 s) a job held by a killed worker waits up to a minute before BullMQ's stall
handling hands it to another worker. Same flags as `bullflow-worker`, plus:

    --lock-ms N         BullMQ Worker lockDuration (ms)
    --stalled-ms N      BullMQ Worker stalledInterval (ms)

Usage: python -m tests.chaos.stall_worker --lock-ms 2000 --stalled-ms 1000 --queue q ...
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bullflow_worker.cli import parse_settings
from bullflow_worker.loader import load_processor
from bullflow_worker.logs import setup_logging
from bullflow_worker.runtime import WorkerApp


def main(argv: list[str]) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--lock-ms", type=int, required=True)
    extra.add_argument("--stalled-ms", type=int, required=True)
    ours, rest = extra.parse_known_args(argv)
    args, settings = parse_settings(rest)
    settings.extra_opts = {
        "lockDuration": ours.lock_ms,
        "stalledInterval": ours.stalled_ms,
        "maxStalledCount": 1,
    }
    setup_logging(args.log_format, args.log_level)
    return asyncio.run(WorkerApp(settings, load_processor(settings.processor_spec)).run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
