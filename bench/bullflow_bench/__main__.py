"""`python -m bench.bullflow_bench [--smoke] [--only NAME ...] [--out DIR]`: run the benchmark
suite on a fresh local control plane + redis-server with the real operator; writes
<out>/<YYYY-MM-DD>.json and .md and prints a one-screen summary.

Every size is a flag and an environment variable (BENCH_<FLAG>, e.g. BENCH_SUB_FLOWS=500);
flags win. --smoke is a tiny preset (seconds per scenario) that keeps the harness working."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import report
from .autoscaling import autoscaling
from .burst_write_back import burst_write_back
from .cron import cron
from .env import BenchEnv, machine_info
from .faults import faults
from .large_flow import large_flow
from .many_flows import many_flows
from .params import SMOKE, Params
from .pickup import worker_pickup
from .profile import summarize_profile
from .resource_cost import resource_cost
from .retry import retry
from .submission import submission
from .topologies import redis_topologies
from .worker_throughput import worker_throughput
from .write_back import write_back

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """How to run one scenario: `run(env, prm)`, awaited when `is_async`, given `smoke=` when
    `takes_smoke`; `profile` is the name its operators' py-spy recordings start with."""

    run: Callable[..., Any]
    is_async: bool
    takes_smoke: bool
    profile: str


# In the order they run. resource_cost is not here: it is computed from the others' results.
SCENARIOS = {
    "submission": Scenario(submission, is_async=True, takes_smoke=False, profile="sub"),
    "write_back": Scenario(write_back, is_async=True, takes_smoke=False, profile="wb"),
    "burst_write_back": Scenario(burst_write_back, is_async=True, takes_smoke=True, profile="bwb"),
    "large_flow": Scenario(large_flow, is_async=True, takes_smoke=False, profile="large"),
    "many_flows": Scenario(many_flows, is_async=True, takes_smoke=False, profile="many"),
    "autoscaling": Scenario(autoscaling, is_async=False, takes_smoke=False, profile="as"),
    "worker_pickup": Scenario(worker_pickup, is_async=True, takes_smoke=True, profile="pickup"),
    "faults": Scenario(faults, is_async=False, takes_smoke=True, profile="faults"),
    "retry": Scenario(retry, is_async=True, takes_smoke=False, profile="retry"),
    "cron": Scenario(cron, is_async=True, takes_smoke=False, profile="cron"),
    "redis_topologies": Scenario(
        redis_topologies, is_async=True, takes_smoke=False, profile="topo"
    ),
    "worker_throughput": Scenario(
        worker_throughput, is_async=True, takes_smoke=True, profile="throughput"
    ),
}
ORDER = tuple(SCENARIOS)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a seconds-long run")
    parser.add_argument(
        "--only",
        action="append",
        choices=ORDER,
        default=[],
        help="run only this scenario (repeatable); resource_cost always follows",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results",
        help="results directory (default bench/results)",
    )
    parser.add_argument("--stem", default=None, help="file name stem (default: today's date)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record every operator with py-spy; summaries go into the results",
    )
    parser.add_argument(
        "--operator-pythonpath",
        default=None,
        help="PYTHONPATH for the operator only: A/B runs of a patched copy of operator/",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep cluster, Redis and operator logs here (default: a temp dir)",
    )
    for f in dataclasses.fields(Params):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(
            flag,
            type=type(f.default),
            default=None,
            help=f"default {f.default} (env BENCH_{f.name.upper()})",
        )
    return parser.parse_args(argv)


def params_from(args: argparse.Namespace) -> Params:
    prm = dataclasses.replace(SMOKE) if args.smoke else Params()
    for f in dataclasses.fields(Params):
        env = os.environ.get(f"BENCH_{f.name.upper()}")
        value = getattr(args, f.name)
        if value is None and env:
            value = type(f.default)(env)
        if value is not None:
            setattr(prm, f.name, value)
    return prm


def run(args: argparse.Namespace) -> dict[str, Any]:
    prm = params_from(args)
    wanted = args.only or list(ORDER)
    start, load_start = time.monotonic(), machine_info()
    results: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "params": dataclasses.asdict(prm),
        "machine": {**load_start, "load_avg_start": load_start["load_avg"]},
        "versions": {
            "python_bullmq": version("bullmq"),
            "node_bullmq": None,
            "kubernetes": None,
            "operator": version("bullflow"),
        },
        "git": _git_head(),
        "scenarios": {},
        "notes": [],
    }
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bullflow-bench-"))
    try:
        with BenchEnv(workdir) as env:
            results["versions"]["kubernetes"] = env.kube_version
            env.operator_pythonpath = args.operator_pythonpath
            if args.operator_pythonpath:
                results["notes"].append(f"operator imported from {args.operator_pythonpath}")
            if args.profile:
                env.profile_dir = workdir / "profiles"
            for name in ORDER:
                if name in wanted:
                    results["scenarios"][name] = run_one(name, env, prm, smoke=args.smoke)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    sub = results["scenarios"].get("submission", {"status": "skipped"})
    many = results["scenarios"].get("many_flows")
    results["scenarios"]["resource_cost"] = resource_cost(sub, many)
    node = [r.get("node_bullmq") for r in sub.get("runs", []) if r.get("node_bullmq")]
    results["versions"]["node_bullmq"] = node[0] if node else None
    results["machine"]["load_avg_end"] = list(os.getloadavg())
    results["total_seconds"] = time.monotonic() - start
    return results


def run_one(name: str, env: BenchEnv, prm: Params, *, smoke: bool) -> dict[str, Any]:
    """One scenario's results, {"status": "error", ...} when it raised; with its duration and,
    under --profile, where its operators' CPU went."""
    scenario = SCENARIOS[name]
    t0 = time.monotonic()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        out = scenario.run(env, prm, **({"smoke": smoke} if scenario.takes_smoke else {}))
        sc = asyncio.run(out) if scenario.is_async else out
    except Exception as err:
        traceback.print_exc()
        sc = {"status": "error", "reason": f"{type(err).__name__}: {err}", "rows": []}
        env.stop_operator()
    sc["seconds"] = time.monotonic() - t0
    if env.profile_dir is not None:
        profiles = sorted(env.profile_dir.glob(f"{scenario.profile}-*"))
        sc["profile"] = summarize_profile(profiles)
    print(f"[bench] {name}: {sc['status']} in {sc['seconds']:.0f} s", file=sys.stderr, flush=True)
    return sc


def _git_head() -> str:
    """The commit measured (+dirty when operator/ has local changes)."""
    import subprocess

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "operator") else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = run(args)
    stem = args.stem or results["date"] + ("-smoke" if args.smoke else "")
    json_path, md_path = report.write(results, args.out, stem)
    print(report.summary(results))
    print(f"\nwrote {json_path} and {md_path}")
    failed = [k for k, v in results["scenarios"].items() if v.get("status") == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
