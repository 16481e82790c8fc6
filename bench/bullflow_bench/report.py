"""Results: JSON (NaN → null), the Markdown table, the one-screen summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

TITLES = {
    "submission": "1. Submission",
    "write_back": "2. Write-back",
    "burst_write_back": "2b. Burst write-back",
    "large_flow": "3. Large flow",
    "many_flows": "4. Many flows",
    "autoscaling": "5. Autoscaling",
    "resource_cost": "6. Resource cost",
    "worker_pickup": "7. Worker pickup",
    "faults": "8. Faults",
    "retry": "9. Retry",
    "cron": "10. CronFlow",
    "redis_topologies": "11. Redis topologies",
    "worker_throughput": "12. Worker throughput",
}


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf → None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def _ratio(r: dict[str, Any]) -> str:
    if r.get("ratio") is None:
        return "-"
    return f"{fmt(r['ratio'])}x {r['ratio_vs']}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# bullflow benchmarks — {results['date']} ({results['mode']})",
        "",
        f"Machine: {m['cpus']} CPUs, {m['mem_gib']} GiB; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_avg_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in m['load_avg_end'])}. "
        f"Total {results['total_seconds']:.0f} s. Kubernetes {results['versions']['kubernetes']},"
        f" operator at commit {results.get('git', '?')},"
        f" Python bullmq {results['versions']['python_bullmq']}, Node bullmq "
        f"{results['versions']['node_bullmq']}.",
        "",
        "| scenario | metric | operator | Python FlowProducer | Node FlowProducer | ratio | "
        "target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, title in TITLES.items():
        sc = results["scenarios"].get(key, {})
        if sc.get("status") != "ok":
            lines.append(
                f"| {title} | {sc.get('status', 'missing')}: {sc.get('reason', '')} | | | | | | |"
            )
            continue
        for r in sc["rows"]:
            lines.append(
                f"| {title} | {r['metric']} | {fmt(r['value'])} {r['unit']} | "
                f"{fmt(r['baseline_python'])} | {fmt(r['baseline_node'])} | {_ratio(r)} | "
                f"{r['target'] or '-'} | {fmt(r['met']) if r['met'] is not None else '-'} |"
            )
    lines += ["", "Notes:", ""]
    for key, title in TITLES.items():
        for note in results["scenarios"].get(key, {}).get("notes", []):
            lines.append(f"- {title}: {note}")
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    share = _cpu_share(results)
    if share:
        lines += [
            "",
            "CPU by process while the operator submits a burst (% of one core; "
            "the machine has "
            f"{m['cpus']} cores):",
            "",
        ]
        lines += [
            f"- {where}: " + ", ".join(f"{k} {v:g}%" for k, v in cpu.items())
            for where, cpu in share
        ]
    for key, title in TITLES.items():
        prof = results["scenarios"].get(key, {}).get("profile")
        if not prof or not prof.get("samples"):
            continue
        lines += [
            "",
            f"Profile of the operator during {title} (py-spy, {prof['samples']} samples):",
            "",
            "| by package (innermost non-stdlib frame) | % | innermost bullflow frame | % "
            "| innermost frame (self) | % |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for pkg, ours, own in zip(
            prof.get("by_package", [])[:10],
            prof["top_bullflow"][:10],
            prof["top_self"][:10],
            strict=False,
        ):
            lines.append(
                f"| {pkg['frame']} | {pkg['percent']} | `{ours['frame']}` | {ours['percent']} "
                f"| `{own['frame']}` | {own['percent']} |"
            )
    return "\n".join(lines) + "\n"


def _cpu_share(results: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    out = []
    for key in ("submission", "many_flows"):
        for i, run in enumerate(results["scenarios"].get(key, {}).get("runs", [])):
            cpu = run.get("cpu_percent_by_process_while_submitting")
            if cpu:
                out.append((f"{TITLES[key]}, run {i + 1}", cpu))
    return out


def summary(results: dict[str, Any]) -> str:
    out = [
        f"bullflow bench ({results['mode']}) {results['date']}, load avg at start "
        f"{results['machine']['load_avg_start'][0]:.2f}, {results['total_seconds']:.0f} s"
    ]
    for key, title in TITLES.items():
        sc = results["scenarios"].get(key, {})
        if sc.get("status") != "ok":
            out.append(f"{title}: {sc.get('status')} {sc.get('reason', '')}")
            continue
        out.append(title)
        for r in sc["rows"]:
            base = ""
            if r["baseline_python"] is not None or r["baseline_node"] is not None:
                base = f"  py {fmt(r['baseline_python'])} node {fmt(r['baseline_node'])}"
            if r.get("ratio") is not None:
                base += f" ({_ratio(r)})"
            verdict = ""
            if r["target"]:
                mark = "" if r["met"] is None else (" OK" if r["met"] else " MISSED")
                verdict = f"  [{r['target']}{mark}]"
            out.append(f"  {r['metric'][:46]:<46} {fmt(r['value']):>8} {r['unit']}{base}{verdict}")
    return "\n".join(out)


def write(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(clean(results), indent=1, allow_nan=False) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
