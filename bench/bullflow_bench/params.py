"""The sizes every scenario reads: `Params` (the full run's defaults; each is also a flag and a
BENCH_<NAME> variable, see __main__.py) and `SMOKE`, the tiny preset of `--smoke`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Params:
    repeats: int = 3
    # The burst's keep-pace ratio moves by ±0.1 from run to run on a shared 2-core machine: its
    # median needs more runs than the other scenarios' numbers.
    sub_repeats: int = 5
    probe_flows: int = 20
    concurrency: int = 64
    sub_flows: int = 1000
    wb_flows: int = 150
    wb_rate: float = 50.0
    large_children: int = 10_000
    large_repeats: int = 3
    many_flows: int = 10_000
    idle_seconds: float = 60.0
    as_jobs: int = 1000
    as_job_seconds: float = 1.0
    as_max_replicas: int = 5
    as_jobs_per_replica: int = 100
    as_poll_seconds: int = 5
    as_down_stabilization_seconds: int = 60
    as_repeats: int = 2
    retry_flows: int = 20
    cron_fires: int = 100
    cron_idle: int = 1000


SMOKE = Params(
    repeats=1,
    sub_repeats=1,
    probe_flows=3,
    concurrency=8,
    sub_flows=10,
    wb_flows=5,
    wb_rate=50,
    large_children=50,
    large_repeats=1,
    many_flows=20,
    idle_seconds=1,
    as_jobs=20,
    as_job_seconds=0.2,
    as_max_replicas=2,
    as_jobs_per_replica=10,
    as_poll_seconds=1,
    as_down_stabilization_seconds=1,
    as_repeats=1,
    retry_flows=3,
    cron_fires=3,
    cron_idle=10,
)
