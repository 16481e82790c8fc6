"""How the operator's metrics are recorded: finishes counted once, durations, build info,
per-queue backlog that sums correctly."""

from __future__ import annotations

import sys

import pytest
from prometheus_client import REGISTRY

import bullflow
from bullflow import metrics
from bullflow.metrics import (
    PhaseBook,
    QueueBacklogBook,
    flow_duration_seconds,
    is_new_finish,
    redis_label,
)
from bullflow.models.workerpool import Backlog

pytestmark = pytest.mark.unit


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("phase", "already_finished", "restored", "new"),
    [
        ("Completed", False, False, True),
        ("Failed", False, False, True),
        ("Completed", True, False, False),  # rewritten, or found finished at start
        ("Failed", False, True, False),  # an idempotencyKey's outcome, copied over
        ("Running", False, False, False),
        ("Submitted", True, False, False),
    ],
)
def test_is_new_finish(phase, already_finished, restored, new):
    assert is_new_finish(phase, already_finished, restored) is new


@pytest.mark.parametrize(
    ("submitted", "finished", "seconds"),
    [
        ("2026-12-03T10:00:00Z", "2026-12-03T10:01:30Z", 90.0),
        ("2026-12-03T10:00:00Z", "2026-12-04T10:00:00Z", 86400.0),
        ("2026-12-03T10:00:00+00:00", "2026-12-03T10:00:00Z", 0.0),
        ("2026-12-03T10:00:05Z", "2026-12-03T10:00:00Z", None),  # clock went backwards
        (None, "2026-12-03T10:00:00Z", None),
        ("2026-12-03T10:00:00Z", None, None),
        ("yesterday", "2026-12-03T10:00:00Z", None),
    ],
)
def test_flow_duration_seconds(submitted, finished, seconds):
    assert flow_duration_seconds(submitted, finished) == seconds


def finished_counts() -> dict[str, float]:
    return {o: sample("bullflow_flows_finished_total", outcome=o) for o in ("completed", "failed")}


def duration_count(outcome: str) -> float:
    return sample("bullflow_flow_duration_seconds_count", outcome=outcome)


def test_a_flow_finishing_is_counted_once_with_its_duration():
    book = PhaseBook()
    before, before_n = finished_counts(), duration_count("completed")
    before_sum = sample("bullflow_flow_duration_seconds_sum", outcome="completed")
    start, end = "2026-12-03T10:00:00Z", "2026-12-03T10:00:42Z"
    book.written("u1", "Submitted", start, None)
    book.written("u1", "Running", start, None)
    book.written("u1", "Completed", start, end)
    book.written("u1", "Completed", start, end)  # a rewrite of the same status
    book.set("u1", "Running")  # a stale body read back by the reconcile
    book.written("u1", "Completed", start, end)  # and the finish written again after it
    after = finished_counts()
    assert after["completed"] - before["completed"] == 1
    assert after["failed"] == before["failed"]
    assert duration_count("completed") - before_n == 1
    after_sum = sample("bullflow_flow_duration_seconds_sum", outcome="completed")
    assert after_sum - before_sum == pytest.approx(42.0)


def test_a_flow_found_finished_or_restored_is_not_a_new_finish():
    book = PhaseBook()
    before = finished_counts()
    book.set("old", "Failed")  # finished before this process started (the reconcile reads it)
    book.written("old", "Failed", "2026-12-03T10:00:00Z", "2026-12-03T10:00:01Z")
    book.written("copy", "Completed", "2026-12-03T10:00:00Z", "2026-12-03T10:00:01Z", True)
    assert finished_counts() == before


def test_a_failed_flow_without_timestamps_is_counted_without_a_duration():
    book = PhaseBook()
    before, before_n = finished_counts(), duration_count("failed")
    book.written("u2", "Failed", None, None)
    assert finished_counts()["failed"] - before["failed"] == 1
    assert duration_count("failed") == before_n


def test_a_dropped_flow_is_forgotten():
    book = PhaseBook()
    book.set("u3", "Completed")
    book.drop("u3")
    before = finished_counts()
    # a new object can never reuse a uid; forgetting keeps the set from growing forever
    book.written("u3", "Completed", None, None)
    assert finished_counts()["completed"] - before["completed"] == 1


def test_build_info():
    labels = {
        "version": bullflow.__version__,
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "kopf_version": metrics.build_info_labels()["kopf_version"],
        "bullmq_version": metrics.build_info_labels()["bullmq_version"],
    }
    assert labels["kopf_version"] != "unknown" and labels["bullmq_version"] != "unknown"
    assert sample("bullflow_build_info", **labels) == 1.0


def test_redis_label_has_no_credentials():
    assert redis_label("redis://user:s3cret@redis.ns:6380/2") == "redis://redis.ns:6380/2"
    assert redis_label("rediss://:tok@host") == "rediss://host/0"
    assert "s3cret" not in redis_label("redis://:s3cret@[::1")


def test_redis_label_of_sentinel_and_cluster_urls_names_hosts_not_credentials():
    sentinel = "redis+sentinel://:pw1@s1:26379,s2/mymaster/2?sentinelPassword=pw2"
    assert redis_label(sentinel) == "redis+sentinel://s1:26379,s2:26379/mymaster/2"
    cluster = "rediss+cluster://u:pw3@n1:7000,[::1]:7001"
    assert redis_label(cluster) == "rediss+cluster://n1:7000,[::1]:7001/0"
    assert redis_label("redis+cluster://:pw4@n1/3") == "unparsable"  # a Cluster has no db 3


def queue_series(redis: str, prefix: str, queue: str) -> dict[str, float]:
    out = {}
    for state in metrics.QUEUE_STATES.values():
        value = REGISTRY.get_sample_value(
            "bullflow_queue_backlog",
            {"redis": redis, "prefix": prefix, "queue": queue, "state": state},
        )
        if value is not None:
            out[state] = value
    return out


def test_two_pools_on_one_queue_export_its_jobs_once_and_states_add_up():
    book = QueueBacklogBook()
    r = "redis://h:6379/0"
    shared = Backlog(waiting=3, delayed=5, delayed_due=2, active=1).model_dump()
    own = Backlog(waiting=7).model_dump()
    book.export("pool-a", {(r, "bull", "q-shared"): shared, (r, "bull", "q-a"): own})
    book.export("pool-b", {(r, "bull", "q-shared"): shared})
    series = queue_series(r, "bull", "q-shared")
    # no total, no delayed-due among the states: their sum is the queue's jobs
    assert sum(series.values()) == 3 + 5 + 1
    assert set(series) == set(metrics.QUEUE_STATES.values())
    assert sample("bullflow_queue_delayed_due", redis=r, prefix="bull", queue="q-shared") == 2
    book.drop("pool-a")
    assert queue_series(r, "bull", "q-a") == {}  # nobody watches it now
    assert queue_series(r, "bull", "q-shared")["waiting"] == 3  # pool-b still does
    book.export("pool-b", {})  # pool-b stopped watching it
    assert queue_series(r, "bull", "q-shared") == {}
    assert book.watched() == set()
