"""Faults: each fault's time to converge, from the chaos suite (tests/chaos), which applies the
faults in turn during a run of 300 flows with Node.js and Python workers and times, for each,
how long after the fault ended (both the API server and Redis answering again) every Flow's
status matched Redis (tests/harness/status_truth.py). The suite brings its own control plane,
Redis and operator, so a fault disturbs no other scenario. --smoke runs its first two steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from .env import ROOT, BenchEnv
from .rows import row

SMOKE_STEPS = "baseline or burst_of_50"
TARGET_SECONDS = 2.0


def faults(env: BenchEnv, _prm: Any, *, smoke: bool = False) -> dict[str, Any]:
    out = env.workdir / "chaos-results"
    argv = [sys.executable, "-m", "pytest", "tests/chaos", "-q", "-p", "no:cacheprovider"]
    if smoke:
        argv += ["-k", SMOKE_STEPS]
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, "BULLFLOW_CHAOS_RESULTS_DIR": str(out)},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    results = out / "latest.json"
    if not results.exists():
        tail = (proc.stdout + proc.stderr)[-2000:]
        reason = f"the chaos suite wrote no results:\n{tail}"
        return {"status": "error", "reason": reason, "rows": []}
    steps: list[dict[str, Any]] = json.loads(results.read_text())
    rows = []
    for step in steps:
        lag = step["after_last_change"]
        rows.append(
            row(
                f"{step['fault']}: last job change → every status true",
                lag if lag is not None else float("nan"),
                "s",
                target=f"p99 ≤ {TARGET_SECONDS:g} s",
                met=step["passed"] and lag is not None and lag <= TARGET_SECONDS,
            )
        )
    failed = proc.returncode != 0
    return {
        "status": "failed" if failed else "ok",
        "reason": (proc.stdout + proc.stderr)[-3000:] if failed else None,
        "params": {"steps": SMOKE_STEPS if smoke else "all"},
        "runs": steps,
        "metrics": {
            "since_fault_end_s": {s["fault"]: s["since_fault_end"] for s in steps},
            "after_last_change_s": {s["fault"]: s["after_last_change"] for s in steps},
        },
        "rows": rows,
        "notes": [
            "From the chaos suite: `last job change → every status true` is the time from the "
            "later of the fault's end (both the API server and Redis answering again) and the "
            "last job change in Redis until every Flow's status matched Redis: phase, nodes, "
            "values, counts and conditions. `since_fault_end_s` in metrics counts from the "
            "fault's end, BullMQ's own recovery (stalled jobs) included. Rows for steps that "
            "failed say so in `runs`; the suite's pass/fail is in `status`.",
        ],
    }
