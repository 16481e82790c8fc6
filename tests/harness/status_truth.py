"""Status truth: does every Flow's `status` say what Redis says about its jobs?

`StatusTruthChecker(api_client, redis_url, namespaces).check()` (redis_url: any topology URL,
redis://, redis+sentinel:// or redis+cluster://) reads every Flow of the given
namespaces through the Kubernetes API, then every job of each Flow from Redis, and returns one
readable line per disagreement. `wait_until_true(timeout)` repeats that until there is none
and, on timeout, fails with the remaining disagreements and how long it waited.

Independent of the operator's status code on purpose: nothing here imports
`bullflow.services.flowstatus` (or the operator's Redis adapter). The expected values are
computed below from what Redis holds, read with Python bullmq's own getters (`Job.fromId`,
`job.getState()`, `job.getChildrenValues()`) and raw keys only where bullmq-python has no getter
(marked where used). The one thing borrowed from the operator is the identity mapping: which job
id and queue each node of a Flow's spec is (`bullflow.services.flowtree.plan` / `flow_token`).

The rules (BullMQ's semantics, written down here independently):

- A node's state is `job.getState()`; a job that Redis does not have is `unknown`, except that
  a job with `removeOnComplete` that is gone counts as `completed` and one with only
  `removeOnFail` as `failed` (removed by the option, as BullMQ does on finishing).
- Lost: an `unknown` job nothing in the spec removes. A flow with lost jobs is `Failed`, its
  Ready condition False with reason `JobsLost` and a message naming how many are missing.
  Exception (historical): a Flow already finished (`Completed`/`Failed`, not `JobsLost`) whose
  jobs and submission marker are all gone finished before Redis lost them; the operator does not
  follow finished Flows, so nothing is compared for it (counted apart, not a disagreement).
- `Failed` iff some job is `failed` and it is a root, or it has none of the failure options that
  let its parent go on (`ignoreDependencyOnFailure`, `removeDependencyOnFailure`,
  `continueParentOnFailure`): without one the parent waits in `waiting-children` forever, and
  with `failParentOnFailure` the parent fails as well (so the chain ends at a failed root or at
  a failed child blocking its parent). Ready reason `JobFailed` or `ChildFailed` (README).
- `Completed` iff every root is `completed`. `Running` if any job is `active`, `completed` or
  `failed`; otherwise `Submitted`.
- Stop and retry (the marker's `operations`): while a stop is in effect the jobs it removed
  are `removed`, not lost, and the flow is `Running` while a job is `active`, then `Stopped`;
  a flow retried at least once is `Running`, not `Submitted`, until it ends again.
- Conditions: Ready is True iff `Completed`; `Completed` and `Failed` conditions True iff that
  phase; no condition may have reason `RedisUnavailable` (the checker just read Redis).
- `counts` = jobs per state, `progress` = `<finished>/<total>` (finished: completed or failed;
  every job when the flow is `Completed`), `totalNodes` = number of jobs,
  `result` = the root's return value (a list of the roots' values for `roots:`).
- Nodes: every job is listed unless `nodesTruncated` is true (large flows, or the status byte
  budget); each listed node must match its job: state, attemptsMade, returnValue, failedReason,
  and for parents childrenValues and ignoredFailures: one entry per child BullMQ has, by its
  BullMQ `key`, with the child's `path` and `name` from the spec (none for a key that is no job
  of the flow) and its `value` / `reason`.
- Values: equal, or, when the value's compact UTF-8 JSON is over the value limit, a string
  ending with the documented mark `...(truncated)` whose text before the mark is a prefix (whole
  characters) of the value (of its JSON text if it is not a string), at most the limit in UTF-8
  bytes, with the node's `truncated: true`. A value over the limit shown whole is a disagreement.
- The whole status, as compact UTF-8 JSON, is at most the status budget in bytes.
- A flow whose submission was refused (Ready reason `SubmitRejected` or
  `DuplicateIdempotencyKey`, README) must be `Failed`; nothing else is compared for it.

Timing: with a `FlowCache` (a watch on the Flows, as an informer keeps them) each round compares
the newest version of every Flow, and a consistent round is confirmed with one plain LIST; the
convergence time is when the newest of those versions arrived, not when the round ran, so it is
as fine as the watch (milliseconds) however long a round takes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bullflow.models.flow import FlowSpec

# The operator's settings type and BullMQ's state lists: configuration and identity, not the
# status logic this checker must not share (it never calls build_status or verdict).
from bullflow.services.flowstatus import StatusLimits as Limits
from bullflow.services.flowtree import PlannedJob, flow_token, plan
from bullflow.storage.redis_jobs import STATE_LISTS

GROUP, VERSION, PLURAL = "bullflow.io", "v1alpha1", "flows"
TRUNCATED_MARK = "...(truncated)"  # README: values above the limit are cut and marked
FINISHED = ("Completed", "Failed", "Stopped")
FAILED_REASONS = ("JobFailed", "ChildFailed")
# README: terminal outcomes where the jobs did not (all) run; nothing in Redis to compare. Whether
# a flow deserved one is the test's to judge (the chaos suite expects each shape's own outcome).
REJECTED_REASONS = ("SubmitRejected", "DuplicateIdempotencyKey")
# bullflow's own submission marker (README: "a submission marker written in the same
# transaction"); not a BullMQ key, so no bullmq getter exists for it.
MARKER_PREFIX = "bullflow:flow"
MAX_REPORTED = 40


@dataclass(frozen=True)
class JobTruth:
    """One job as Redis has it (from bullmq's getters)."""

    exists: bool
    state: str
    attempts_made: int = 0
    return_value: Any = None
    failed_reason: str | None = None
    children_values: dict[str, Any] = field(default_factory=dict)
    ignored_failures: dict[str, str] = field(default_factory=dict)
    changed_ms: int = 0  # newest of the job's timestamp, processedOn, finishedOn (epoch ms)


MISSING = JobTruth(exists=False, state="unknown")


@dataclass(frozen=True)
class FlowTruth:
    jobs: list[PlannedJob]
    by_id: dict[str, JobTruth]
    marker: bool = True  # bullflow's submission marker is in Redis
    # From the marker's "operations" (README: retry and stop): the paths the stop in effect
    # removed (None: no stop in effect), and whether a retry was ever applied.
    stopped: frozenset[str] | None = None
    retried: bool = False

    def truth(self, job: PlannedJob) -> JobTruth:
        return self.by_id.get(job.job_id, MISSING)


@dataclass(frozen=True)
class Expected:
    phase: str
    states: dict[str, str]  # by path
    lost: list[PlannedJob]


def planned_jobs(flow: dict[str, Any]) -> tuple[str, list[PlannedJob]]:
    """The token job ids derive from and the Flow's jobs (ids, queues, options), from its spec:
    the operator's identity mapping."""
    meta = flow["metadata"]
    spec = FlowSpec.model_validate(flow.get("spec") or {})
    token = flow_token(meta["uid"], meta["namespace"], spec.idempotency_key)
    return token, plan(spec, token)


def effective_state(job: PlannedJob, truth: JobTruth) -> str:
    if truth.exists:
        return truth.state
    if job.removed_on_complete:
        return "completed"
    if job.removed_on_fail:
        return "failed"
    return "unknown"


def marker_fields(raw: str | None) -> dict[str, Any]:
    """FlowTruth's marker fields from the marker's JSON (None: no marker)."""
    if not raw:
        return {"marker": False}
    operations = json.loads(raw).get("operations") or {}
    stopped = operations.get("stopped")
    return {
        "marker": True,
        "stopped": None if not stopped else frozenset(stopped.get("removed") or []),
        "retried": bool(operations.get("retryCount")),
    }


def expected(truth: FlowTruth) -> Expected:
    """The phase BullMQ's semantics give the jobs' states (rules in the module docstring)."""
    states = {j.path: effective_state(j, truth.truth(j)) for j in truth.jobs}
    removed = truth.stopped or frozenset()
    states.update({p: "removed" for p in removed if states.get(p) == "unknown"})
    lost = [j for j in truth.jobs if states[j.path] == "unknown"]
    roots = [j for j in truth.jobs if j.parent_path is None]
    if truth.stopped is not None:
        active = any(s == "active" for s in states.values())
        phase = "Running" if active else "Stopped"
    elif lost or any(
        states[j.path] == "failed" and (j.parent_path is None or not j.tolerates_failure)
        for j in truth.jobs
    ):
        phase = "Failed"
    elif all(states[j.path] == "completed" for j in roots):
        phase = "Completed"
    elif truth.retried or any(s in ("active", "completed", "failed") for s in states.values()):
        phase = "Running"
    else:
        phase = "Submitted"
    return Expected(phase, states, lost)


def is_historical(flow: dict[str, Any], truth: FlowTruth) -> bool:
    """Finished before Redis lost everything: not comparable (module docstring)."""
    status = flow.get("status") or {}
    ready = _conditions(status).get("Ready") or {}
    return (
        status.get("phase") in FINISHED
        and ready.get("reason") != "JobsLost"
        and not truth.marker
        and not any(truth.truth(j).exists for j in truth.jobs)
    )


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def utf8_len(value: Any) -> int:
    return len(json_text(value).encode())


def value_mismatch(shown: Any, actual: Any, limits: Limits) -> str | None:
    """None if `shown` is what the status may say for `actual`; else why not."""
    over = actual is not None and utf8_len(actual) > limits.max_value_bytes
    if isinstance(shown, str) and shown.endswith(TRUNCATED_MARK) and shown != actual:
        if not over:
            return (
                f"shown truncated but the value is {utf8_len(actual)} bytes, within "
                f"{limits.max_value_bytes}: {_short(actual)}"
            )
        kept = shown[: -len(TRUNCATED_MARK)]
        text = actual if isinstance(actual, str) else json_text(actual)
        if len(kept.encode()) > limits.max_value_bytes:
            return (
                f"truncated to {len(kept.encode())} UTF-8 bytes, over the "
                f"{limits.max_value_bytes}-byte limit"
            )
        if not text.startswith(kept):
            return (
                f"truncated text is not a prefix of the value ({len(kept)} chars kept; "
                f"first difference at char {_first_difference(kept, text)})"
            )
        return None
    if not same_json(shown, actual):
        return f"{_short(shown)} != Redis {_short(actual)}"
    if over:
        return (
            f"a value of {utf8_len(actual)} UTF-8 bytes shown whole "
            f"(limit {limits.max_value_bytes})"
        )
    return None


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON: the API server may reorder object keys, and True is not 1."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _first_difference(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in status.get("conditions") or []}


def compare_flow(flow: dict[str, Any], truth: FlowTruth, limits: Limits) -> list[str]:
    """Every disagreement between the Flow's status and its jobs' truth, one line each."""
    meta = flow["metadata"]
    where = f"{meta['namespace']}/{meta['name']}"
    status = flow.get("status") or {}
    conds = _conditions(status)
    out: list[str] = []

    def bad(what: str) -> None:
        out.append(f"{where}: {what}")

    for cond in conds.values():
        if cond.get("reason") == "RedisUnavailable":
            bad(f"condition {cond.get('type')} says RedisUnavailable but Redis answers")
    size = utf8_len(status)
    if size > limits.max_status_bytes:
        bad(f"status is {size} UTF-8 bytes, over the {limits.max_status_bytes}-byte budget")
    if not status.get("submittedAt"):
        bad(f"not submitted (phase {status.get('phase')!r}) although Redis answers")
        return out
    if is_historical(flow, truth):
        return out
    ready_reason = (conds.get("Ready") or {}).get("reason")
    if ready_reason in REJECTED_REASONS:
        failed = conds.get("Failed") or {}
        if status.get("phase") != "Failed" or failed.get("status") != "True":
            bad(f"Ready reason {ready_reason} but phase {status.get('phase')!r}, Failed={failed}")
        return out
    exp = expected(truth)
    jobs = truth.jobs
    phase = status.get("phase")
    if phase != exp.phase:
        bad(f"phase {phase!r}, Redis says {exp.phase!r} ({_states_summary(exp)})")
    if phase in FINISHED and not status.get("finishedAt"):
        bad(f"phase {phase} without finishedAt")
    out += [f"{where}: {m}" for m in _condition_mismatches(conds, exp, len(jobs))]

    counts = {k: v for k, v in (status.get("counts") or {}).items() if v}
    want_counts = dict(Counter(exp.states.values()))
    if counts != want_counts:
        bad(f"counts {counts}, Redis says {want_counts}")
    finished = want_counts.get("completed", 0) + want_counts.get("failed", 0)
    want_progress = f"{len(jobs) if exp.phase == 'Completed' else finished}/{len(jobs)}"
    if status.get("progress") != want_progress:
        bad(f"progress {status.get('progress')!r}, Redis says {want_progress!r}")
    if status.get("totalNodes") != len(jobs):
        bad(f"totalNodes {status.get('totalNodes')!r}, the spec has {len(jobs)} jobs")

    roots = [j for j in jobs if j.parent_path is None]
    actual_result: Any
    if len(roots) == 1:
        actual_result = truth.truth(roots[0]).return_value
    else:
        actual_result = [truth.truth(r).return_value for r in roots]
    if (why := value_mismatch(status.get("result"), actual_result, limits)) is not None:
        bad(f"result: {why}")

    out += [f"{where}: {m}" for m in _node_mismatches(status, truth, exp, limits)]
    return out


def _states_summary(exp: Expected) -> str:
    counts = Counter(exp.states.values())
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _condition_mismatches(conds: dict[str, dict[str, Any]], exp: Expected, total: int) -> list[str]:
    out = []
    ready = conds.get("Ready")
    if ready is None:
        return ["no Ready condition"]
    want_ready = "True" if exp.phase == "Completed" else "False"
    if ready.get("status") != want_ready:
        out.append(f"Ready={ready.get('status')} ({ready.get('reason')}), want {want_ready}")
    reason = ready.get("reason")
    if exp.lost:
        if reason != "JobsLost":
            out.append(
                f"{len(exp.lost)} of {total} jobs missing from Redis but Ready reason is "
                f"{reason!r}, not 'JobsLost'"
            )
        elif not re.search(rf"(?<![\d.]){len(exp.lost)}(?![\d.])", ready.get("message") or ""):
            out.append(
                f"JobsLost message does not say how many jobs are missing "
                f"({len(exp.lost)}): {ready.get('message')!r}"
            )
    elif reason == "JobsLost":
        out.append("Ready reason JobsLost but every job is in Redis")
    elif exp.phase == "Failed" and reason not in FAILED_REASONS:
        out.append(
            f"phase Failed in Redis but Ready reason {reason!r}, not one of {FAILED_REASONS}"
        )
    for type_ in ("Completed", "Failed"):
        cond = conds.get(type_)
        want = "True" if exp.phase == type_ else "False"
        if cond is None:
            if exp.phase in FINISHED:
                out.append(f"no {type_} condition although the flow is {exp.phase}")
            continue
        if cond.get("status") != want:
            out.append(f"condition {type_}={cond.get('status')}, want {want}")
    stopped = conds.get("Stopped") or {}
    if exp.phase == "Stopped" and stopped.get("status") != "True":
        out.append(f"phase Stopped in Redis but condition Stopped={stopped.get('status')}")
    return out


def _node_mismatches(
    status: dict[str, Any], truth: FlowTruth, exp: Expected, limits: Limits
) -> list[str]:
    out = []
    by_path = {j.path: j for j in truth.jobs}
    jobs_by_id = {j.job_id: j for j in truth.jobs}
    listed: dict[str, dict[str, Any]] = {}
    for node in status.get("nodes") or []:
        path = str(node.get("path"))
        if path in listed:
            out.append(f"node {path} listed twice")
        listed[path] = node
    if not status.get("nodesTruncated"):
        missing = [p for p in by_path if p not in listed]
        if missing:
            out.append(f"{len(missing)} node(s) not listed without nodesTruncated: {missing[:5]}")
    for path, node in listed.items():
        job = by_path.get(path)
        if job is None:
            out.append(f"node {path} listed but the spec has no such node")
            continue
        found = _one_node(node, job, truth.truth(job), exp, limits, jobs_by_id)
        out += [f"node {path}: {m}" for m in found]
    return out


def _one_node(
    node: dict[str, Any],
    job: PlannedJob,
    truth: JobTruth,
    exp: Expected,
    limits: Limits,
    jobs_by_id: dict[str, PlannedJob],
) -> list[str]:
    out = []
    for key, want in (("jobId", job.job_id), ("queue", job.queue), ("name", job.name)):
        if node.get(key) != want:
            out.append(f"{key} {node.get(key)!r}, the spec's is {want!r}")
    state = exp.states[job.path]
    if node.get("state") != state:
        out.append(f"state {node.get('state')!r}, Redis says {state!r}")
    if int(node.get("attemptsMade") or 0) != truth.attempts_made:
        out.append(f"attemptsMade {node.get('attemptsMade')!r}, Redis says {truth.attempts_made}")
    cut = False
    for key, shown, actual in (
        ("returnValue", node.get("returnValue"), truth.return_value),
        ("failedReason", node.get("failedReason"), truth.failed_reason),
    ):
        if (why := value_mismatch(shown, actual, limits)) is not None:
            out.append(f"{key}: {why}")
        cut = cut or _marked(shown, actual)
    if job.has_children:
        for key, field_name, actual_map in (
            ("childrenValues", "value", truth.children_values),
            ("ignoredFailures", "reason", truth.ignored_failures),
        ):
            entries = node.get(key) or []
            out += _child_identities(key, entries, jobs_by_id)
            shown_map = {e.get("key"): e.get(field_name) for e in entries}
            if set(shown_map) != set(actual_map) or len(shown_map) != len(entries):
                extra = sorted(str(k) for k in set(shown_map) - set(actual_map))[:3]
                absent = sorted(set(actual_map) - set(shown_map))[:3]
                out.append(
                    f"{key} keys differ from Redis: {len(entries)} shown, "
                    f"{len(actual_map)} in Redis (extra {extra}, missing {absent})"
                )
            for child_key in sorted(str(k) for k in set(shown_map) & set(actual_map)):
                shown, actual = shown_map[child_key], actual_map[child_key]
                if (why := value_mismatch(shown, actual, limits)) is not None:
                    out.append(f"{key}[{child_key}]: {why}")
                cut = cut or _marked(shown, actual)
    elif node.get("childrenValues") or node.get("ignoredFailures"):
        out.append("a job without children shows childrenValues/ignoredFailures")
    if cut and node.get("truncated") is not True:
        out.append("a value is truncated but the node does not say truncated: true")
    return out


def _child_identities(
    key: str, entries: list[dict[str, Any]], jobs_by_id: dict[str, PlannedJob]
) -> list[str]:
    """Each entry names its child (path and name from the spec) beside BullMQ's key; a key that
    is no job of the flow is shown with no path or name."""
    out = []
    for entry in entries:
        child_key = str(entry.get("key"))
        job = jobs_by_id.get(child_key.rsplit(":", 1)[-1])
        if job is not None and not child_key.endswith(f":{job.queue}:{job.job_id}"):
            job = None
        want = (job.path, job.name) if job is not None else (None, None)
        if (entry.get("path"), entry.get("name")) != want:
            out.append(
                f"{key}[{child_key}]: path/name {entry.get('path')!r}/{entry.get('name')!r}, "
                f"the spec's {want[0]!r}/{want[1]!r}"
            )
    return out


def _marked(shown: Any, actual: Any) -> bool:
    return isinstance(shown, str) and shown.endswith(TRUNCATED_MARK) and shown != actual


# -- reading both sides -------------------------------------------------------------------------


@dataclass
class CheckReport:
    mismatches: list[str]
    flows: int
    jobs: int
    historical: int
    settled: bool  # every flow's expected phase is Completed or Failed
    listed_at: float  # time.time() when the Flows had been read (end of the list)
    last_change_ms: int  # newest job timestamp/processedOn/finishedOn in Redis (epoch ms)
    seconds: float  # how long the round took
    by_flow: dict[str, list[str]] = field(default_factory=dict)
    newest_arrival: float = 0.0  # time.time() the newest Flow version compared arrived


@dataclass
class Convergence:
    seconds: float  # from `since` to the arrival of the newest Flow version that made it true
    lag_seconds: float  # from max(since, newest job change in Redis) to the same point
    rounds: int
    round_seconds: float  # the consistent round's own duration
    flows: int
    jobs: int
    historical: int


class FlowCache:
    """The Flows of some namespaces as a watch keeps them (list, then watch from its
    resourceVersion; list again after any error or expiry, e.g. while the API server is down),
    with the time.time() each version arrived here."""

    def __init__(self, api_client: Any, namespaces: Iterable[str]) -> None:
        self.api_client = api_client
        self.namespaces = list(namespaces)
        self._lock = threading.Lock()
        self._flows: dict[str, tuple[dict[str, Any], float]] = {}
        self._synced: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._generation = 0

    def start(self, timeout: float = 30) -> FlowCache:
        generation = self._generation
        for ns in self.namespaces:
            thread = threading.Thread(
                target=self._run, args=(ns, generation), daemon=True, name=f"flows-{ns}"
            )
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + timeout
        while len(self._synced) < len(self.namespaces):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Flow watch not synced after {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._stop.set()

    def restart(self, timeout: float = 30) -> FlowCache:
        """List and watch anew from new threads (the old ones stop at their next step): a
        request sent while the API server was starting may be answered seconds late, and the
        versions it holds back would be timed as the operator's."""
        with self._lock:
            self._generation += 1
            self._synced.clear()
        return self.start(timeout)

    def snapshot(self) -> list[tuple[dict[str, Any], float]]:
        with self._lock:
            return [
                (flow, arrived)
                for flow, arrived in self._flows.values()
                if not flow["metadata"].get("deletionTimestamp")
            ]

    def _run(self, ns: str, generation: int) -> None:
        from kubernetes import client, watch

        custom: Any = client.CustomObjectsApi(self.api_client)
        while not self._stop.is_set() and generation == self._generation:
            try:
                listing = custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, _request_timeout=30
                )
                now = time.time()
                with self._lock:
                    if generation != self._generation:
                        return
                    old = {k: v for k, v in self._flows.items() if k.startswith(f"{ns}/")}
                    for key in old:
                        del self._flows[key]
                    for item in listing["items"]:
                        key = _key(item)
                        self._flows[key] = (item, _arrival(old.get(key), item, now))
                self._synced.add(ns)
                rv = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    ns,
                    PLURAL,
                    resource_version=rv,
                    timeout_seconds=60,
                    _request_timeout=90,
                )
                for event in stream:
                    if self._stop.is_set() or generation != self._generation:
                        return
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR" or not isinstance(obj, dict):
                        break  # e.g. 410 Gone: list again
                    with self._lock:
                        if kind == "DELETED":
                            self._flows.pop(_key(obj), None)
                        elif kind in ("ADDED", "MODIFIED"):
                            key = _key(obj)
                            arrival = _arrival(self._flows.get(key), obj, time.time())
                            self._flows[key] = (obj, arrival)
            except Exception:
                self._stop.wait(0.2)


def _arrival(
    before: tuple[dict[str, Any], float] | None, now_seen: dict[str, Any], now: float
) -> float:
    """When the status now seen first arrived: a new version that changed only metadata (a
    finalizer, an annotation) keeps the arrival of the status it carries, so convergence is
    timed by the status, not by unrelated writes."""
    if before is not None and before[0].get("status") == now_seen.get("status"):
        return before[1]
    return now


class StatusTruthChecker:
    """Reads Flows (Kubernetes API) and their jobs (Redis, Python bullmq's getters)."""

    def __init__(
        self,
        api_client: Any,
        redis_url: str,
        namespaces: Iterable[str],
        limits: Limits | None = None,
        concurrency: int = 48,
        cache: FlowCache | None = None,
    ) -> None:
        self.api_client = api_client
        self.redis_url = redis_url
        self.namespaces = list(namespaces)
        self.limits = limits or Limits()
        self.concurrency = concurrency
        self.cache = cache
        self._plans: dict[str, tuple[str, list[PlannedJob]]] = {}  # by uid: specs are immutable

    def _plan(self, flow: dict[str, Any]) -> tuple[str, list[PlannedJob]]:
        uid = flow["metadata"]["uid"]
        if uid not in self._plans:
            self._plans[uid] = planned_jobs(flow)
        return self._plans[uid]

    def read_flows(self) -> list[dict[str, Any]]:
        from kubernetes import client

        custom: Any = client.CustomObjectsApi(self.api_client)
        flows: list[dict[str, Any]] = []
        for ns in self.namespaces:
            listing = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
            flows += [f for f in listing["items"] if not f["metadata"].get("deletionTimestamp")]
        return flows

    def check(
        self, exclude: Iterable[str] = (), *, getters: bool = False, listed: bool = False
    ) -> CheckReport:
        """One round: the Flows first, then Redis (so a clean round means the statuses read
        already said what Redis said after them). `exclude`: "<ns>/<name>" not to compare.
        getters=True: read Redis one job at a time through bullmq's getters (slow; the
        reference the default batched reads are checked against). With a cache, the Flows are
        its versions unless listed=True (a plain LIST)."""
        started = time.monotonic()
        skip = set(exclude)
        if self.cache is not None and not listed:
            versions = [(f, t) for f, t in self.cache.snapshot() if _key(f) not in skip]
        else:
            versions = [(f, time.time()) for f in self.read_flows() if _key(f) not in skip]
        flows = [f for f, _ in versions]
        listed_at = time.time()
        newest = max((t for _, t in versions), default=0.0)
        planned = [(f, *self._plan(f)) for f in flows]
        truths = asyncio.run(self._read_truths(planned, getters))
        mismatches: list[str] = []
        by_flow: dict[str, list[str]] = {}
        historical = 0
        settled = True
        last_change = 0
        for (flow, _, _), truth in zip(planned, truths, strict=True):
            found = compare_flow(flow, truth, self.limits)
            if found:
                by_flow[_key(flow)] = found
                mismatches += found
            if is_historical(flow, truth):
                historical += 1
                continue
            settled = settled and expected(truth).phase in FINISHED
            last_change = max([last_change, *(t.changed_ms for t in truth.by_id.values())])
        return CheckReport(
            mismatches,
            len(flows),
            sum(len(jobs) for _, _, jobs in planned),
            historical,
            settled,
            listed_at,
            last_change,
            time.monotonic() - started,
            by_flow,
            newest,
        )

    def wait_until_true(
        self,
        timeout: float,
        *,
        since: float | None = None,
        settled: bool = False,
        exclude: Iterable[str] = (),
        poll: float = 0.1,
        check: Callable[[], None] | None = None,
    ) -> Convergence:
        """Repeat `check()` until it finds nothing (and, with settled=True, every flow is
        finished in Redis). `since`: a time.time() (a fault's end) to measure from. `check`:
        called every round, may raise to stop early (the operator died...)."""
        since = time.time() if since is None else since
        deadline = time.monotonic() + timeout
        rounds = 0
        excluded = list(exclude)
        while True:
            if check is not None:
                check()
            rounds += 1
            report = self.check(excluded)
            done = not report.mismatches and (report.settled or not settled)
            if done and self.cache is not None:
                # The watch's versions agree: confirm with a LIST (nothing newer disagrees).
                confirm = self.check(excluded, listed=True)
                done = not confirm.mismatches and (confirm.settled or not settled)
            # Timed by the first clean round's snapshot (an upper bound, within one round of
            # the truth), not by the newest version's arrival: a later write that changes
            # nothing compared (a condition's time, a finalizer) must not count.
            true_at = max(report.listed_at, since)
            if done:
                changed = max(since, report.last_change_ms / 1000)
                return Convergence(
                    seconds=true_at - since,
                    lag_seconds=max(0.0, true_at - changed),
                    rounds=rounds,
                    round_seconds=report.seconds,
                    flows=report.flows,
                    jobs=report.jobs,
                    historical=report.historical,
                )
            if time.monotonic() >= deadline:
                shown = report.mismatches[:MAX_REPORTED]
                more = len(report.mismatches) - len(shown)
                unsettled = "" if report.settled or not settled else "; not every flow finished"
                raise AssertionError(
                    f"Flow statuses still disagree with Redis after waiting "
                    f"{time.time() - since:.1f}s ({rounds} rounds, {report.flows} flows, "
                    f"{len(report.by_flow)} disagreeing{unsettled}):\n"
                    + "\n".join(shown)
                    + (f"\n... and {more} more" if more > 0 else "")
                )
            time.sleep(poll)

    async def _read_truths(
        self,
        planned: list[tuple[dict[str, Any], str, list[PlannedJob]]],
        getters: bool = False,
    ) -> list[FlowTruth]:
        # The worker's client factory: standalone, Sentinel (the master the sentinels name
        # now) or Cluster (each key read on the node that owns its slot), from one URL.
        from bullflow_worker.redis_address import parse_redis_address
        from bullflow_worker.redis_clients import async_client

        client = async_client(
            parse_redis_address(self.redis_url),
            decode_responses=True,
            max_connections=self.concurrency,
            socket_timeout=10,
            socket_connect_timeout=5,
        )
        reader: _GetterReader | _BatchReader = (
            _GetterReader(client, self.concurrency)
            if getters
            else _BatchReader(client, self.concurrency)
        )
        try:
            return await reader.read(planned)
        finally:
            await client.aclose()


class _Queues:
    """bullmq Queue objects (keys, scripts, getters) on one shared client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.queues: dict[tuple[str, str], Any] = {}

    def get(self, prefix: str, name: str) -> Any:
        from bullmq import Queue

        if (prefix, name) not in self.queues:
            self.queues[prefix, name] = Queue(name, {"connection": self.client, "prefix": prefix})
        return self.queues[prefix, name]


def _prefix(flow: dict[str, Any]) -> str:
    return str((flow.get("spec") or {}).get("prefix") or "bull")


def _truth_of(job: Any, state: str, children: dict[str, Any], ignored: dict[str, str]) -> JobTruth:
    """A bullmq Job (as Job.fromId / Job.fromJSON builds it) and its state, as a JobTruth."""
    return JobTruth(
        exists=True,
        state=state,
        attempts_made=int(job.attemptsMade or 0),
        return_value=getattr(job, "returnvalue", None),
        failed_reason=getattr(job, "failedReason", None) or None,
        children_values=dict(children),
        ignored_failures=dict(ignored),
        changed_ms=max(
            int(job.timestamp or 0),
            int(getattr(job, "processedOn", 0) or 0),
            int(getattr(job, "finishedOn", 0) or 0),
        ),
    )


class _GetterReader:
    """One job at a time with bullmq's getters: Job.fromId, job.getState(),
    job.getChildrenValues(). The reference; ~1 ms per job here, too slow to time convergence
    with a round over a thousand flows, so `_BatchReader` makes the same reads in pipelines and
    the chaos suite checks once that both agree."""

    def __init__(self, client: Any, concurrency: int) -> None:
        self.client = client
        self.queues = _Queues(client)
        self.gate = asyncio.Semaphore(concurrency)

    async def read(
        self, planned: list[tuple[dict[str, Any], str, list[PlannedJob]]]
    ) -> list[FlowTruth]:
        return list(await asyncio.gather(*(self.flow(*p) for p in planned)))

    async def flow(self, flow: dict[str, Any], token: str, jobs: list[PlannedJob]) -> FlowTruth:
        prefix = _prefix(flow)
        async with self.gate:
            marker = await self.client.get(f"{MARKER_PREFIX}:{prefix}:{token}")
        read = await asyncio.gather(*(self.job(self.queues.get(prefix, j.queue), j) for j in jobs))
        by_id = {j.job_id: t for j, t in zip(jobs, read, strict=True)}
        return FlowTruth(jobs, by_id, **marker_fields(marker))

    async def job(self, queue: Any, planned_job: PlannedJob) -> JobTruth:
        from bullmq import Job

        async with self.gate:
            job = await Job.fromId(queue, planned_job.job_id)
            if job is None:
                return MISSING
            state = await job.getState()
            children: dict[str, Any] = {}
            ignored: dict[str, str] = {}
            if planned_job.has_children:
                children = await job.getChildrenValues()
                # Node's getIgnoredChildrenFailures reads this hash; bullmq-python has no
                # getter for it.
                ignored = await self.client.hgetall(f"{queue.toKey(planned_job.job_id)}:failed")
        return _truth_of(job, state, children, ignored)


BATCH_FLOWS = 100


class _BatchReader:
    """The same reads as the getters, in pipelines of BATCH_FLOWS flows: Job.fromId is HGETALL
    of the job's hash parsed by bullmq's Job.fromJSON; job.getState() is bullmq's getStateV2
    script with the keys Scripts.getState passes (Redis >= 6.0.6); getChildrenValues is HGETALL
    of `:processed` parsed by bullmq's parse_json_string_values. `:failed` (ignored failures)
    has no bullmq-python getter. Not atomic across jobs, like the getters: a round that reads a
    job mid-change disagrees and the next one settles it. On a Redis Cluster, redis-py refuses
    scripts in a pipeline, so there the state scripts run beside it (CLUSTER_SCRIPTS at a time,
    within the client's per-node connection limit)."""

    def __init__(self, client: Any, concurrency: int = 48) -> None:
        from redis.asyncio.cluster import RedisCluster

        self.client = client
        self.queues = _Queues(client)
        self.cluster = isinstance(client, RedisCluster)
        self.script_gate = asyncio.Semaphore(max(1, concurrency // 2))

    async def _script(self, call: Callable[..., Any]) -> Any:
        async with self.script_gate:
            return await call()

    async def read(
        self, planned: list[tuple[dict[str, Any], str, list[PlannedJob]]]
    ) -> list[FlowTruth]:
        batches = [planned[i : i + BATCH_FLOWS] for i in range(0, len(planned), BATCH_FLOWS)]
        done = await asyncio.gather(*(self.batch(b) for b in batches))
        return [truth for batch in done for truth in batch]

    async def batch(
        self, planned: list[tuple[dict[str, Any], str, list[PlannedJob]]]
    ) -> list[FlowTruth]:
        from bullmq import Job
        from bullmq.utils import parse_json_string_values

        beside: list[Callable[[], Any]] = []  # state scripts run outside the pipeline
        async with self.client.pipeline(transaction=False) as pipe:
            for flow, token, jobs in planned:
                prefix = _prefix(flow)
                pipe.get(f"{MARKER_PREFIX}:{prefix}:{token}")
                for planned_job in jobs:
                    queue = self.queues.get(prefix, planned_job.queue)
                    key = queue.toKey(planned_job.job_id)
                    pipe.hgetall(key)
                    get_state = functools.partial(
                        queue.scripts.commands["getStateV2"],
                        keys=queue.scripts.getKeys(STATE_LISTS),
                        args=[planned_job.job_id, key],
                    )
                    if self.cluster:
                        beside.append(get_state)
                    else:
                        await get_state(client=pipe)
                    if planned_job.has_children:
                        pipe.hgetall(f"{key}:processed")
                        pipe.hgetall(f"{key}:failed")
            replies = iter(await pipe.execute())
        states = iter(await asyncio.gather(*(self._script(c) for c in beside)))
        out = []
        for flow, _, jobs in planned:
            prefix = _prefix(flow)
            marker = marker_fields(next(replies))
            by_id: dict[str, JobTruth] = {}
            for planned_job in jobs:
                raw = next(replies)
                state = next(states) if self.cluster else next(replies)
                processed, failed = ({}, {})
                if planned_job.has_children:
                    processed, failed = next(replies), next(replies)
                if not raw:
                    by_id[planned_job.job_id] = MISSING
                    continue
                queue = self.queues.get(prefix, planned_job.queue)
                job = Job.fromJSON(queue, raw, planned_job.job_id)
                children = parse_json_string_values(processed)
                by_id[planned_job.job_id] = _truth_of(job, state, children, failed)
            out.append(FlowTruth(jobs, by_id, **marker))
        return out


def _key(flow: dict[str, Any]) -> str:
    return f"{flow['metadata']['namespace']}/{flow['metadata']['name']}"
