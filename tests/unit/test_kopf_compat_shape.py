"""The private APIs bullflow reaches into still have the shape it relies on.

bullflow subclasses and patches private parts of kopf (operator/bullflow/kopf_compat), of Python
bullmq (FlowProducer's tree building and Scripts, in operator/bullflow/storage/redis_jobs.py and
worker-image/bullflow_worker/bullmq_compat.py), of kubernetes_asyncio/aiohttp (the session's
`_trust_env`, storage/kube.py) and of redis-py (hiredis command packing, redis_jobs.py; the
default read timeout, bullmq_compat.py). pyproject.toml bounds those libraries to the versions
checked here; on an upgrade, this test says what moved, before anything misbehaves silently (an
override kopf no longer calls, an attribute set on an object that no longer reads it).

Only shapes are checked here: names, signatures, attributes. What the code does with them is
tested elsewhere (test_kopf_storage, test_kopf_namespaces, test_redis_packing,
test_worker_bullmq_compat, the integration tests). Nothing here connects to anything.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.unit

UNREACHABLE = "redis://127.0.0.1:9/0"  # nothing is sent


def moved(library: str, what: str, user: str) -> str:
    """The message of a failed check: what changed, in which version, who relies on it."""
    version = importlib.metadata.version(library)
    return (
        f"{library} {version}: {what}. {user} relies on it (a private API): adapt it to this "
        f"{library}, then move {library}'s bound in pyproject.toml (and worker-image/'s)."
    )


def private(library: str, dotted: str, user: str) -> Any:
    """Import `module[:attribute.path]`, failing with a clear message if it is gone."""
    module_name, _, attributes = dotted.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        pytest.fail(moved(library, f"module {module_name} is gone ({e})", user))
    path = module_name
    for name in filter(None, attributes.split(".")):
        path = f"{path}.{name}"
        if not hasattr(obj, name):
            pytest.fail(moved(library, f"{path} is gone", user))
        obj = getattr(obj, name)
    return obj


def keyword_names(function: Callable[..., Any]) -> set[str]:
    """The parameters a caller can pass by keyword (self and *args/**kwargs left out)."""
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = inspect.signature(function).parameters.values()
    return {p.name for p in params if p.kind in kinds and p.name != "self"}


def positional_names(function: Callable[..., Any]) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = inspect.signature(function).parameters.values()
    return [p.name for p in params if p.kind in kinds and p.name != "self"]


def require(library: str, ok: bool, what: str, user: str) -> None:
    """Not `assert`: the message, with the version and the user, is the point."""
    if not ok:
        pytest.fail(moved(library, what, user))


def method_taking(
    library: str,
    owner: Any,
    name: str,
    expected: set[str] | list[str],
    user: str,
) -> Any:
    """`owner.name`, failing unless it exists and takes exactly `expected`: keyword names for a
    set, positional names in order for a list."""
    label = f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
    method: Any = getattr(owner, name, None)
    require(library, method is not None, f"{label} is gone", user)
    names = keyword_names if isinstance(expected, set) else positional_names
    taken = names(method)
    require(library, taken == expected, f"{label} takes {taken}, not {expected}", user)
    return method


# --- kopf: operator/bullflow/kopf_compat/storage.py --------------------------------------------

KOPF_STORAGE = "bullflow/kopf_compat/storage.py"
# Every method MemoryDiffBaseStorage / MemoryProgressStorage override, with the keywords kopf
# calls it with: an override that no longer matches kopf's base is silently never called right.
DIFFBASE_METHODS = {
    "build": {"body", "extra_fields"},
    "fetch": {"body"},
    "store": {"body", "patch", "essence"},
}
PROGRESS_METHODS = {
    "fetch": {"key", "body"},
    "store": {"key", "record", "body", "patch"},
    "purge": {"key", "body", "patch"},
    "touch": {"body", "patch", "value"},
    "clear": {"essence"},
}


def test_kopf_private_structs_used_by_the_memory_storages_exist() -> None:
    for dotted in (
        "kopf._cogs.configs.progress:ProgressRecord",
        "kopf._cogs.structs.bodies:Body",
        "kopf._cogs.structs.bodies:BodyEssence",
        "kopf._cogs.structs.dicts:FieldSpec",
        "kopf._cogs.structs.ids:HandlerId",
        "kopf._cogs.structs.patches:Patch",
    ):
        private("kopf", dotted, KOPF_STORAGE)
    record = private("kopf", "kopf._cogs.configs.progress:ProgressRecord", KOPF_STORAGE)
    # MemoryProgressStorage copies records with ProgressRecord(**record): a TypedDict.
    require("kopf", issubclass(record, dict), "ProgressRecord is no longer a dict", KOPF_STORAGE)


@pytest.mark.parametrize(
    ("base", "subclass", "methods"),
    [
        ("DiffBaseStorage", "MemoryDiffBaseStorage", DIFFBASE_METHODS),
        ("ProgressStorage", "MemoryProgressStorage", PROGRESS_METHODS),
    ],
)
def test_kopf_storage_methods_bullflow_overrides_keep_their_keywords(
    base: str, subclass: str, methods: dict[str, set[str]]
) -> None:
    from bullflow.kopf_compat import storage

    kopf_base = private("kopf", f"kopf:{base}", KOPF_STORAGE)
    ours = getattr(storage, subclass)
    require("kopf", issubclass(ours, kopf_base), f"{subclass} is no kopf.{base}", KOPF_STORAGE)
    for name, keywords in methods.items():
        method_taking("kopf", kopf_base, name, keywords, KOPF_STORAGE)  # what kopf passes
        method_taking("kopf", ours, name, keywords, KOPF_STORAGE)  # what bullflow accepts
    # A new abstract method in kopf's base would make ours uninstantiable.
    abstract = set(getattr(kopf_base, "__abstractmethods__", ())) - set(methods)
    require("kopf", not abstract, f"kopf.{base} has new abstract methods {abstract}", KOPF_STORAGE)


def test_kopf_annotations_progress_storage_still_touches_by_keyword() -> None:
    """MemoryProgressStorage delegates its retry touch to AnnotationsProgressStorage."""
    cls = private("kopf", "kopf:AnnotationsProgressStorage", KOPF_STORAGE)
    require(
        "kopf",
        "prefix" in keyword_names(cls.__init__),
        "AnnotationsProgressStorage() takes no prefix=",
        KOPF_STORAGE,
    )
    method_taking("kopf", cls, "touch", PROGRESS_METHODS["touch"], KOPF_STORAGE)


def test_kopf_settings_bullflow_sets_exist() -> None:
    """handlers/lifecycle.py and __main__.py set these; kopf's settings are plain dataclasses,
    so setting a name kopf renamed would pass silently and change nothing."""
    import kopf

    settings = kopf.OperatorSettings()
    for dotted in (
        "persistence.progress_storage",
        "persistence.diffbase_storage",
        "persistence.finalizer",
        "posting.level",
        "watching.server_timeout",
        "watching.chunk_size",
        "queueing.worker_limit",
        "queueing.idle_timeout",
        "networking.error_backoffs",
        "peering.lifetime",
    ):
        obj: Any = settings
        for name in dotted.split("."):
            require(
                "kopf",
                hasattr(obj, name),
                f"OperatorSettings().{dotted} is gone",
                "bullflow/handlers/lifecycle.py",
            )
            obj = getattr(obj, name)


# --- kopf: operator/bullflow/kopf_compat/namespaces.py -----------------------------------------

KOPF_NAMESPACES = "bullflow/kopf_compat/namespaces.py"


def test_kopf_namespace_observer_looks_its_event_handler_up_by_module_attribute() -> None:
    """`install` replaces observation.process_discovered_namespace_event; that takes effect only
    while namespace_observer reads the module global when it starts."""
    observation = private("kopf", "kopf._core.reactor.observation", KOPF_NAMESPACES)
    observer = private("kopf", "kopf._core.reactor.observation:namespace_observer", KOPF_NAMESPACES)
    require(
        "kopf",
        "process_discovered_namespace_event" in observer.__code__.co_names,
        "namespace_observer no longer reads the module's process_discovered_namespace_event",
        KOPF_NAMESPACES,
    )
    handler = observation.process_discovered_namespace_event
    handler = getattr(handler, "__wrapped__", handler)  # kopf's own, if installed already
    require(
        "kopf",
        inspect.iscoroutinefunction(handler),
        "process_discovered_namespace_event is no longer a coroutine function",
        KOPF_NAMESPACES,
    )
    keywords = keyword_names(handler)
    require(
        "kopf",
        {"raw_event", "namespaces", "insights"} <= keywords,
        f"process_discovered_namespace_event takes {sorted(keywords)}",
        KOPF_NAMESPACES,
    )
    revise = private("kopf", "kopf._core.reactor.observation:revise_namespaces", KOPF_NAMESPACES)
    require(
        "kopf",
        {"raw_events", "insights", "namespaces"} <= keyword_names(revise),
        f"revise_namespaces takes {sorted(keyword_names(revise))}",
        KOPF_NAMESPACES,
    )


def test_kopf_insights_hold_the_namespaces_and_the_revised_condition() -> None:
    import asyncio

    insights_cls = private("kopf", "kopf._cogs.structs.references:Insights", KOPF_NAMESPACES)
    insights = insights_cls()
    require(
        "kopf",
        isinstance(getattr(insights, "namespaces", None), set),
        "Insights().namespaces is no longer a set",
        KOPF_NAMESPACES,
    )
    require(
        "kopf",
        isinstance(getattr(insights, "revised", None), asyncio.Condition),
        "Insights().revised is no longer an asyncio.Condition",
        KOPF_NAMESPACES,
    )


# --- bullmq: operator/bullflow/storage/redis_jobs.py -------------------------------------------

REDIS_JOBS = "bullflow/storage/redis_jobs.py"


def get_keys_argument(function: Callable[..., Any]) -> list[str]:
    """The key names `function`'s source passes to Scripts.getKeys([...])."""
    call = inspect.getsource(function).split("getKeys(", 1)[-1].split(")", 1)[0]
    return re.findall(r"""['"]([a-z-]+)['"]""", call)


def test_bullmq_flowproducer_builds_trees_the_way_bullflow_calls_it() -> None:
    producer = private("bullmq", "bullmq:FlowProducer", REDIS_JOBS)
    tree = method_taking(
        "bullmq", producer, "_queue_tree", ["entries", "flow", "queues_options"], REDIS_JOBS
    )
    require(
        "bullmq",
        inspect.iscoroutinefunction(tree),
        "FlowProducer._queue_tree is no longer async",
        REDIS_JOBS,
    )
    method_taking("bullmq", producer, "queueFromNode", ["node", "prefix"], REDIS_JOBS)
    method_taking("bullmq", producer, "__init__", ["redisOpts", "opts"], REDIS_JOBS)


async def test_bullmq_flow_entries_and_scripts_have_the_shape_bullflow_submits_with() -> None:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

    from bullflow.storage.redis_jobs import STATE_LISTS, BullRedis, _FlowProducer

    client = aioredis.from_url(UNREACHABLE, decode_responses=True)
    try:
        producer = _FlowProducer(client, {"prefix": "shape"})
        require("bullmq", producer.prefix == "shape", "FlowProducer.prefix is gone", REDIS_JOBS)
        entries: list[Any] = []
        flow = {"name": "p", "queueName": "parents", "children": [{"name": "c", "queueName": "k"}]}
        await producer._queue_tree(entries, flow, None)
        require(
            "bullmq",
            [(set(e), e.get("is_parent")) for e in entries]
            == [({"job", "is_parent"}, True), ({"job", "is_parent"}, False)],
            f"_queue_tree's entries are now {entries!r}, not {{job, is_parent}} parents first",
            REDIS_JOBS,
        )
        job = entries[0]["job"]
        require(
            "bullmq",
            job.queue.name == "parents" and hasattr(job.queue.backend, "scripts"),
            "a flow job's queue has no .name or .backend.scripts",
            REDIS_JOBS,
        )
        scripts = producer.scripts("parents")
        for name, params in {
            "addJob": ["job", "pipe"],
            "addParentJob": ["job", "pipe"],
            "getKeys": ["keys"],
            "remove": ["job_id", "remove_children"],
        }.items():
            method_taking("bullmq", scripts, name, params, REDIS_JOBS)
        command = scripts.commands.get("getStateV2")
        require(
            "bullmq",
            isinstance(command, AsyncScript),
            "Scripts.commands['getStateV2'] is gone or no longer a redis-py script",
            REDIS_JOBS,
        )
        require(
            "bullmq",
            {"keys", "args", "client"} <= keyword_names(command.__call__),
            "getStateV2 no longer takes keys=, args=, client=",
            REDIS_JOBS,
        )
        # BullRedis.read_snapshots calls getStateV2 itself, with the lists bullmq's getState uses.
        theirs = get_keys_argument(type(scripts).getState)
        ours = list(STATE_LISTS)
        assert "getKeys(STATE_LISTS)" in inspect.getsource(BullRedis.read_snapshots)
        require(
            "bullmq",
            len(ours) > 1 and theirs == ours,
            f"Scripts.getState now passes getStateV2 the keys of {theirs}, STATE_LISTS {ours}",
            REDIS_JOBS,
        )
    finally:
        await client.aclose()


# --- redis-py: hiredis packing (redis_jobs.py), default read timeout (bullmq_compat.py) ---------


def test_redis_py_connection_packing_hooks_exist() -> None:
    serializer = private("redis", "redis.connection:HiredisRespSerializer", REDIS_JOBS)
    private("redis", "redis.utils:HIREDIS_AVAILABLE", REDIS_JOBS)
    require("redis", callable(getattr(serializer, "pack", None)), "no .pack(*args)", REDIS_JOBS)
    connection = private("redis", "redis.asyncio.connection:Connection", REDIS_JOBS)
    require(
        "redis",
        callable(getattr(connection, "pack_command", None)),
        "redis.asyncio Connection.pack_command is gone",
        REDIS_JOBS,
    )
    import redis.asyncio as aioredis

    pool = aioredis.from_url(UNREACHABLE).connection_pool
    require(
        "redis",
        isinstance(getattr(pool, "connection_class", None), type),
        "ConnectionPool.connection_class is gone",
        REDIS_JOBS,
    )


WORKER_COMPAT = "worker-image/bullflow_worker/bullmq_compat.py"


async def test_bullmq_worker_connections_bullflow_worker_retimes_exist() -> None:
    """The names bullmq_compat uses; test_worker_bullmq_compat.py tests what it does with them."""
    private("redis", "redis._defaults:DEFAULT_SOCKET_TIMEOUT", WORKER_COMPAT)
    worker_cls = private("bullmq", "bullmq:Worker", WORKER_COMPAT)
    private("bullmq", "bullmq:Worker.getBlockTimeout", WORKER_COMPAT)

    async def processor(job: Any, token: str) -> None:
        raise AssertionError("nothing runs here")

    worker = worker_cls("shape", processor, {"connection": UNREACHABLE, "autorun": False})
    try:
        for name in ("maximumBlockTimeout", "blockingRedisConnection", "redisConnection"):
            require("bullmq", hasattr(worker, name), f"Worker().{name} is gone", WORKER_COMPAT)
        for name in ("blockingRedisConnection", "redisConnection"):
            conn = getattr(worker, name)
            require(
                "bullmq",
                hasattr(conn, "conn") and hasattr(conn.conn, "connection_pool"),
                f"Worker().{name}.conn is no longer a redis-py client",
                WORKER_COMPAT,
            )
            require(
                "redis",
                isinstance(getattr(conn.conn.connection_pool, "connection_kwargs", None), dict),
                "ConnectionPool.connection_kwargs is no longer a dict",
                WORKER_COMPAT,
            )
    finally:
        await worker.close()


# --- kubernetes_asyncio / aiohttp: operator/bullflow/storage/kube.py -----------------------------

KUBE = "bullflow/storage/kube.py"


async def test_kubernetes_asyncio_session_still_trusts_env_through_a_private_flag() -> None:
    """KubeApi.connect turns the aiohttp session's `_trust_env` off (proxy and ~/.netrc lookups
    on every request); storage/kube.py skips it silently when the attribute is missing."""
    session_cls = private("aiohttp", "aiohttp:ClientSession", KUBE)
    require(
        "aiohttp",
        "_trust_env" in getattr(session_cls, "ATTRS", ()),
        "ClientSession no longer has a _trust_env attribute",
        KUBE,
    )
    from kubernetes_asyncio import client

    api = client.ApiClient()
    try:
        session: Any = getattr(api.rest_client, "pool_manager", None)
        require(
            "kubernetes_asyncio",
            isinstance(session, session_cls),
            "ApiClient().rest_client.pool_manager is no longer an aiohttp ClientSession",
            KUBE,
        )
        require(
            "aiohttp",
            getattr(session, "_trust_env", None) is True and session.trust_env is True,
            "the session's trust_env no longer reads _trust_env",
            KUBE,
        )
        session._trust_env = False
        require("aiohttp", session.trust_env is False, "setting _trust_env changes nothing", KUBE)
    finally:
        await api.close()
