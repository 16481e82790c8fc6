"""`make bench-smoke`: the benchmark suite's tiny preset runs every scenario end to end (its own
local control plane, Redis, real operator and workers) and writes complete results.

Only the shape of the results is checked: no timing assertions (numbers are `make bench`'s job).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = (
    "submission",
    "write_back",
    "burst_write_back",
    "large_flow",
    "many_flows",
    "autoscaling",
    "resource_cost",
    "worker_pickup",
    "faults",
    "retry",
    "cron",
    "redis_topologies",
    "worker_throughput",
)


def test_every_scenario_of_the_suite_is_checked() -> None:
    from bench.bullflow_bench.__main__ import ORDER

    assert set(SCENARIOS) == {*ORDER, "resource_cost"}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_bench_smoke_writes_every_scenario_with_numbers(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bullflow_bench",
            "--smoke",
            "--out",
            str(tmp_path),
            "--stem",
            "smoke",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    results = json.loads((tmp_path / "smoke.json").read_text())
    markdown = (tmp_path / "smoke.md").read_text()

    assert results["mode"] == "smoke"
    assert _is_number(results["total_seconds"])
    assert all(_is_number(x) for x in results["machine"]["load_avg_start"])
    for name in SCENARIOS:
        scenario = results["scenarios"][name]
        assert scenario["status"] == "ok", (name, scenario.get("reason"))
        assert scenario["rows"], name
        for row in scenario["rows"]:
            assert _is_number(row["value"]), (name, row)
            for key in ("baseline_python", "baseline_node", "ratio"):
                assert row[key] is None or _is_number(row[key]), (name, row)
            assert row["met"] in (None, True, False), (name, row)
        if name != "resource_cost":
            assert scenario["runs"], name
        assert scenario["metrics"], name

    # Both baselines ran in the same run, and the ratios came out.
    compared = [r for r in results["scenarios"]["submission"]["rows"] if r["ratio"] is not None]
    assert compared, results["scenarios"]["submission"]["rows"]
    for row in compared:
        assert _is_number(row["baseline_python"]) and _is_number(row["baseline_node"]), row
    many = results["scenarios"]["many_flows"]["runs"][0]
    assert many["executions"] == many["expected_jobs"]
    assert many["duplicates"] == 0 and many["missing"] == 0
    assert "| scenario | metric |" in markdown and "6. Resource cost" in markdown
    assert "bullflow bench (smoke)" in proc.stdout
