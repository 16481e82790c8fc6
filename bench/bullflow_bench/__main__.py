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
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import report, scenarios
from .burst_write_back import burst_write_back
from .env import BenchEnv, machine_info
from .faults import faults
from .pickup import worker_pickup
from .profile import summarize_profile
from .scenarios import SMOKE, Params

ROOT = Path(__file__).resolve().parents[2]
ORDER = (
    "submission",
    "write_back",
    "burst_write_back",
    "large_flow",
    "many_flows",
    "autoscaling",
    "worker_pickup",
    "faults",
)


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
                if name not in wanted:
                    continue
                t0 = time.monotonic()
                print(f"[bench] {name} ...", file=sys.stderr, flush=True)
                try:
                    if name == "autoscaling":
                        sc = scenarios.autoscaling(env, prm)
                    elif name == "burst_write_back":
                        sc = asyncio.run(burst_write_back(env, prm, smoke=args.smoke))
                    elif name == "faults":
                        sc = faults(env, prm, smoke=args.smoke)
                    elif name == "worker_pickup":
                        sc = asyncio.run(worker_pickup(env, prm, smoke=args.smoke))
                    else:
                        sc = asyncio.run(getattr(scenarios, name)(env, prm))
                except Exception as err:
                    traceback.print_exc()
                    sc = {"status": "error", "reason": f"{type(err).__name__}: {err}", "rows": []}
                    env.stop_operator()
                sc["seconds"] = time.monotonic() - t0
                if env.profile_dir is not None:
                    key = {
                        "write_back": "wb",
                        "burst_write_back": "bwb",
                        "large_flow": "large",
                        "many_flows": "many",
                        "autoscaling": "as",
                        "submission": "sub",
                        "worker_pickup": "pickup",
                        "faults": "faults",
                    }[name]
                    sc["profile"] = summarize_profile(sorted(env.profile_dir.glob(f"{key}-*")))
                results["scenarios"][name] = sc
                print(
                    f"[bench] {name}: {sc['status']} in {sc['seconds']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    sub = results["scenarios"].get("submission", {"status": "skipped"})
    many = results["scenarios"].get("many_flows")
    results["scenarios"]["resource_cost"] = scenarios.resource_cost(sub, many)
    node = [r.get("node_bullmq") for r in sub.get("runs", []) if r.get("node_bullmq")]
    results["versions"]["node_bullmq"] = node[0] if node else None
    results["machine"]["load_avg_end"] = list(os.getloadavg())
    results["total_seconds"] = time.monotonic() - start
    return results


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
