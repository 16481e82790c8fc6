"""CronFlow end to end (real apiserver, redis-server, Python and Node workers, the real
operator): runs on time that complete, Forbid, Replace, suspend/resume, history limits, a
catch-up after the operator was down, and two operators racing for the same runs."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from kubernetes import client

from tests.e2e.flows import EXAMPLES, GROUP, VERSION, BullflowObjects
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_plugin_and_argocd_health import plugin

LABEL = "bullflow.io/cronflow"
SCHEDULED = "bullflow.io/scheduled-time"


class CronFlows(BullflowObjects):
    plural = "cronflows"

    def runs(self, name: str) -> list[dict[str, Any]]:
        """The CronFlow's Flows, oldest scheduled time first."""
        reply = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "flows", label_selector=f"{LABEL}={name}"
        )
        return sorted(reply["items"], key=lambda f: int(f["metadata"]["labels"][SCHEDULED]))

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float = 40) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.25)
        raise AssertionError(f"not seen after {timeout}s: {what}")

    def events(self, name: str) -> list[dict[str, Any]]:
        core = client.CoreV1Api(self.custom.api_client)
        found = core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return [{"reason": e.reason, "message": e.message} for e in found.items]


@pytest.fixture
def cronflows(kube_client: Any, kubectl: Any, namespace: str) -> CronFlows:
    return CronFlows(kube_client, kubectl, namespace)


def cronflow_doc(name: str, schedule: str, root: dict[str, Any], prefix: str, **spec: Any) -> dict:
    return {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "CronFlow",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            **spec,
            "flowTemplate": {
                "metadata": {"labels": {"team": "e2e"}},
                "spec": {"prefix": prefix, "root": root},
            },
        },
    }


def phase(flow: dict[str, Any]) -> str:
    return str((flow.get("status") or {}).get("phase") or "Pending")


def scheduled_at(flow: dict[str, Any]) -> int:
    return int(flow["metadata"]["labels"][SCHEDULED])


def created_at(flow: dict[str, Any]) -> float:
    text = flow["metadata"]["creationTimestamp"].replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def test_runs_on_time_complete_and_history_is_pruned_then_suspend_and_resume(
    operator, workers, cronflows, redis_prefix
):
    # The parent runs on a Node worker, the children on a Python worker.
    workers.start("python", ["cf-child"], redis_prefix)
    workers.start("node", ["cf-parent"], redis_prefix)
    root = {
        "name": "report-${schedule.date}",
        "queueName": "cf-parent",
        "data": {"combine": "sum", "at": "${schedule.unix}"},
        "children": [{"name": "part", "queueName": "cf-child", "data": {"result": 2}}],
    }
    doc = cronflow_doc("tick", "@every 3s", root, redis_prefix, successfulFlowsHistoryLimit=2)
    cronflows.apply(doc)
    # Five runs: on time, named and labelled by their scheduled time, all completed.
    cronflows.wait_until("5 runs", lambda: len(_seen_runs(cronflows, "tick")) >= 5, 40)
    seen = _seen_runs(cronflows, "tick")
    times = sorted(seen)
    assert all(t % 3 == 0 for t in times) and times == list(range(times[0], times[-1] + 1, 3))
    for at, flow in seen.items():
        assert flow["metadata"]["name"] == f"tick-{at}"
        assert flow["metadata"]["labels"]["team"] == "e2e"
        assert flow["metadata"]["ownerReferences"][0]["kind"] == "CronFlow"
        # creationTimestamp has whole seconds: created less than 3 s (one period) after its time.
        assert 0 <= created_at(flow) - at <= 2, (at, flow["metadata"]["creationTimestamp"])
        assert flow["spec"]["root"]["data"]["at"] == at  # exactly one placeholder: a number

    # History: at most 2 completed runs kept (older ones pruned), every run completed.
    def pruned() -> list[dict[str, Any]]:
        runs = cronflows.runs("tick")
        return runs if len([f for f in runs if phase(f) == "Completed"]) <= 2 else []

    runs = cronflows.wait_until("history pruned to 2 completed", pruned)
    assert all(phase(f) in ("Completed", "Pending", "Submitted", "Running") for f in runs)
    status = cronflows.get("tick")["status"]
    assert status["lastSuccessfulTime"] and status["nextScheduleTime"]
    assert any(c["type"] == "Ready" and c["reason"] == "Scheduled" for c in status["conditions"])

    cronflows.custom.patch_namespaced_custom_object(
        GROUP, VERSION, cronflows.namespace, "cronflows", "tick", {"spec": {"suspend": True}}
    )
    suspended_at = time.time()
    cronflows.wait_until(
        "Suspended", lambda: _ready_reason(cronflows.get("tick")) == "Suspended", 10
    )
    time.sleep(7)
    newest = max(scheduled_at(f) for f in cronflows.runs("tick"))
    assert newest <= suspended_at + 0.5, "a run was created while suspended"
    cronflows.custom.patch_namespaced_custom_object(
        GROUP, VERSION, cronflows.namespace, "cronflows", "tick", {"spec": {"suspend": False}}
    )
    resumed_at = time.time()
    cronflows.wait_until(
        "a run after resume",
        lambda: max(scheduled_at(f) for f in cronflows.runs("tick")) > resumed_at,
        10,
    )


def _seen_runs(cronflows: CronFlows, name: str) -> dict[int, dict[str, Any]]:
    """Completed runs (kept by the test while pruning deletes them from the API)."""
    seen = getattr(cronflows, "_seen", {})
    for flow in cronflows.runs(name):
        if phase(flow) == "Completed":
            seen[scheduled_at(flow)] = flow
    cronflows._seen = seen  # type: ignore[attr-defined]
    return dict(seen)


def _ready_reason(cronflow: dict[str, Any]) -> str | None:
    conditions = (cronflow.get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)


def test_forbid_skips_while_a_run_is_active(operator, workers, cronflows, redis_prefix):
    workers.start("python", ["cf-slow"], redis_prefix)
    root = {"name": "slow", "queueName": "cf-slow", "data": {"sleepSeconds": 5, "result": 1}}
    cronflows.apply(
        cronflow_doc("once", "@every 2s", root, redis_prefix, concurrencyPolicy="Forbid")
    )
    cronflows.wait_until(
        "two runs completed",
        lambda: len([f for f in cronflows.runs("once") if phase(f) == "Completed"]) >= 2,
        40,
    )
    runs = cronflows.runs("once")
    # Never two at once: each run was created after the previous one finished.
    for before, after in itertools.pairwise(runs):
        finished = before["status"]["finishedAt"].replace("Z", "+00:00")
        assert created_at(after) >= datetime.fromisoformat(finished).timestamp()
    assert any(e["reason"] == "RunSkipped" for e in cronflows.events("once"))
    assert cronflows.get("once")["status"]["lastSkippedTime"]


def test_replace_stops_the_running_flow(operator, workers, cronflows, redis_prefix):
    workers.start("python", ["cf-long"], redis_prefix)
    root = {
        "name": "long",
        "queueName": "cf-long",
        "data": {"combine": "sum"},
        "children": [{"name": "sleep", "queueName": "cf-long", "data": {"sleepSeconds": 8}}],
    }
    cronflows.apply(
        cronflow_doc("swap", "@every 5s", root, redis_prefix, concurrencyPolicy="Replace")
    )
    runs = cronflows.wait_until("two runs", lambda: (r := cronflows.runs("swap"))[1:] and r, 30)
    first = runs[0]["metadata"]["name"]

    def first_run() -> dict[str, Any] | None:
        return next((f for f in cronflows.runs("swap") if f["metadata"]["name"] == first), None)

    # Submitted when replaced: stopped (a Pending one would have been deleted instead).
    cronflows.wait_until("the first run stopped", lambda: phase(first_run() or {}) == "Stopped")
    stopped = first_run()
    assert stopped is not None
    assert stopped["metadata"]["annotations"]["bullflow.io/stop"].startswith(
        "replaced by cronflow swap at "
    )


@pytest.fixture
def own_operators(
    local_cluster: Any, redis_server: Any, private_namespace: str, tmp_path: Path
) -> Iterator[Callable[[], OperatorProcess]]:
    """Operators of this test only, standalone (no peering), watching its namespace."""
    started: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        log_dir = tmp_path / f"op{len(started)}"
        log_dir.mkdir()
        proc = OperatorProcess(
            local_cluster.kubeconfig, redis_server.url, log_dir, namespaces=[private_namespace]
        )
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


def test_two_operators_race_then_one_catch_up_after_downtime(
    own_operators, kube_client, kubectl, private_namespace, redis_prefix
):
    cronflows = CronFlows(kube_client, kubectl, private_namespace)
    first, second = own_operators(), own_operators()
    root = {"name": "idle", "queueName": "cf-nobody", "data": {}}
    cronflows.apply(cronflow_doc("race", "@every 2s", root, redis_prefix))
    cronflows.wait_until("5 runs", lambda: len(cronflows.runs("race")) >= 5, 30)
    runs = cronflows.runs("race")
    times = [scheduled_at(f) for f in runs]
    # One Flow per scheduled time, none missing, though both operators created each.
    assert times == list(range(times[0], times[-1] + 1, 2)), times
    for proc in (first, second):
        proc.kill9()
    down_since = time.time()
    time.sleep(7.5)  # three or four scheduled times pass with no operator
    own_operators()
    # The catch-up run is named by its Event (its time may fall after the restart began: a
    # later missed time than the last one with no operator at all).
    missed = cronflows.wait_until(
        "a MissedSchedules Event",
        lambda: [e for e in cronflows.events("race") if e["reason"] == "MissedSchedules"],
        20,
    )
    assert len(missed) == 1, missed
    found = re.search(r"before (\S+); ran the latest", missed[0]["message"])
    assert found, missed[0]["message"]
    caught_up = datetime.fromisoformat(found.group(1).replace("Z", "+00:00")).timestamp()
    assert caught_up > down_since + 2, (caught_up, down_since)  # some times were missed
    cronflows.wait_until(
        "the catch-up run",
        lambda: [f for f in cronflows.runs("race") if abs(scheduled_at(f) - caught_up) <= 1],
        20,
    )
    time.sleep(1)  # no second catch-up run comes late
    runs = cronflows.runs("race")
    # One run for the latest missed time, none for the earlier ones: one catch-up, not one per
    # missed time.
    assert len([f for f in runs if abs(scheduled_at(f) - caught_up) <= 1]) == 1
    earlier = [f for f in runs if down_since < scheduled_at(f) < caught_up - 1]
    assert earlier == [], [f["metadata"]["name"] for f in earlier]


def test_plugin_trigger_runs_now_and_tree_draws_the_last_run(
    operator, workers, cronflows, redis_prefix, local_cluster
):
    workers.start("python", ["cf-manual"], redis_prefix)
    root = {"name": "made-${schedule.date}", "queueName": "cf-manual", "data": {"result": 7}}
    cronflows.apply(cronflow_doc("yearly", "@yearly", root, redis_prefix))
    namespace = cronflows.namespace
    empty = plugin(local_cluster, "tree", "cronflow/yearly", "-n", namespace)
    assert empty.returncode == 1 and "has no runs" in empty.stderr
    done = plugin(local_cluster, "trigger", "yearly", "-n", namespace)
    assert done.returncode == 0, done.stderr
    name = re.fullmatch(r"flow\.bullflow\.io/(yearly-manual-[a-z0-9]{5}) created\n", done.stdout)
    assert name, done.stdout
    flow = cronflows.wait_until(
        "the manual run completed",
        lambda: next((f for f in cronflows.runs("yearly") if phase(f) == "Completed"), None),
    )
    assert flow["metadata"]["name"] == name.group(1)
    assert flow["metadata"]["annotations"]["bullflow.io/trigger"] == "manual"
    drawn = plugin(local_cluster, "tree", "cronflow/yearly", "-n", namespace, "--ascii")
    assert drawn.returncode == 0, drawn.stderr
    assert (
        name.group(1) in drawn.stdout
        and f"made-{flow['metadata']['annotations']['bullflow.io/scheduled-at'][:10]}"
        in (drawn.stdout)
    )


def test_bad_input_is_refused_or_reported(operator, cronflows, kubectl, redis_prefix):
    root = {"name": "x", "queueName": "cf-none"}
    both = cronflow_doc("both", "@daily", root, redis_prefix)
    both["spec"]["flowTemplate"]["spec"]["templateRef"] = {"name": "t"}
    negative = cronflow_doc("negative", "@daily", root, redis_prefix, failedFlowsHistoryLimit=-1)
    for doc, says in ((both, "exactly one of root, roots or templateRef"), (negative, "-1")):
        refused = kubectl(
            "apply", "-n", cronflows.namespace, "-f", "-", input=yaml.safe_dump(doc), check=False
        )
        assert refused.returncode != 0 and says in refused.stderr, refused.stderr
    cases = {
        "bad-cron": ("61 * * * *", None, "InvalidSchedule"),
        "bad-zone": ("@daily", "Mars/Olympus", "UnknownTimeZone"),
    }
    for name, (schedule, zone, _) in cases.items():
        extra = {"timeZone": zone} if zone else {}
        cronflows.apply(cronflow_doc(name, schedule, root, redis_prefix, **extra))
    for name, (_, _, reason) in cases.items():
        cronflows.wait_until(
            f"{name}: Ready=False {reason}",
            lambda n=name, r=reason: _ready_reason(cronflows.get(n)) == r,
            15,
        )
        assert not cronflows.get(name)["status"].get("nextScheduleTime")
    # The operator keeps serving: a valid CronFlow next to them is scheduled.
    cronflows.apply(cronflow_doc("fine", "@daily", root, redis_prefix))
    cronflows.wait_until(
        "fine scheduled", lambda: _ready_reason(cronflows.get("fine")) == "Scheduled"
    )


def test_cron_examples_run_when_triggered(
    operator, workers, cronflows, kubectl, redis_prefix, local_cluster
):
    """examples/cron: the nightly ETL (inline tree) and the daily report (over the FlowTemplate
    examples/templates/report-template.yaml), each run now with `kubectl bullflow trigger`."""
    ns = cronflows.namespace
    template = yaml.safe_load((EXAMPLES / "templates" / "report-template.yaml").read_text())
    kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(template))
    workers.start("python", ["reports", "report-sections", "etl-extract"], redis_prefix)
    workers.start("node", ["etl-transform", "etl-load"], redis_prefix)
    for example in ("nightly-etl", "daily-report"):
        doc = yaml.safe_load((EXAMPLES / "cron" / f"{example}.yaml").read_text())
        doc["spec"]["flowTemplate"]["spec"]["prefix"] = redis_prefix
        cronflows.apply(doc)
        done = plugin(local_cluster, "trigger", example, "-n", ns)
        assert done.returncode == 0, done.stderr
    runs = {
        name: cronflows.wait_until(
            f"{name}'s run completed",
            lambda n=name: next((f for f in cronflows.runs(n) if phase(f) == "Completed"), None),
            60,
        )
        for name in ("nightly-etl", "daily-report")
    }
    etl = runs["nightly-etl"]
    berlin = _local_date(etl, "Europe/Berlin")
    assert etl["spec"]["root"]["data"]["day"] == berlin
    assert list(etl["status"]["result"].values()) == [100]  # load collects transform's sum
    report = runs["daily-report"]
    new_york = _local_date(report, "America/New_York")
    assert report["spec"]["arguments"]["month"] == new_york
    assert {n["name"] for n in report["status"]["nodes"]} >= {f"assemble-report-{new_york}"}


def _local_date(flow: dict[str, Any], zone: str) -> str:
    at = flow["metadata"]["annotations"]["bullflow.io/scheduled-at"].replace("Z", "+00:00")
    return datetime.fromisoformat(at).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d")
