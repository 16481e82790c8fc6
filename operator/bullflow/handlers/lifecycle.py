"""Operator start-up and shutdown: settings, shared clients, controllers."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ..config import Settings
from ..controllers.connections import RedisPool
from ..controllers.cronflow import CronFlowController
from ..controllers.flow import FINALIZER, FlowController
from ..controllers.workerpool import WorkerPoolController
from ..kopf_compat.storage import MemoryDiffBaseStorage, MemoryProgressStorage
from ..storage.kube import KubeApi

ANNOTATION_PREFIX = "bullflow.io"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Progress and diff-base in memory: no kopf write per handled object (kopf_compat.storage).
    progress = MemoryProgressStorage(prefix=ANNOTATION_PREFIX)
    diffbase = MemoryDiffBaseStorage()
    settings.persistence.progress_storage = progress
    settings.persistence.diffbase_storage = diffbase
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING  # our own Events carry the story
    settings.watching.server_timeout = 300
    # kopf lists every watched kind on start and whenever a watch stream restarts, and the list
    # reply stayed referenced while it watched (tracemalloc): unpaginated, every Flow of the
    # cluster in one reply, held as bytes, text and objects, made the operator's peak RSS.
    # Paginated, only the last page lingers.
    settings.watching.chunk_size = 500
    # A per-object worker holds its slot until it has been idle for `idle_timeout` (kopf's
    # default 5 s), and a new Flow sees 2-3 events within its first second (created, status,
    # finalizer): a burst is processed at most at `worker_limit` / (that second + idle_timeout)
    # objects/s whatever the CPU. A worker is a small task; what runs concurrently is bounded
    # elsewhere (status writes, Redis pipelines).
    # (`settings.batching` is kopf's deprecated alias of `settings.queueing`.)
    settings.queueing.worker_limit = 1000
    settings.queueing.idle_timeout = 0.2
    # kopf retries a failed API request (a watch included) after 1, 1, 2, 3, 5, 8, 13, 21 s:
    # after an API server outage of 15 s its watches came back seconds after the API server,
    # and Flows created just before the outage waited for them. Every second at most instead.
    settings.networking.error_backoffs = [0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    config = Settings()
    kube = await KubeApi.connect()
    pool = RedisPool(kube, config.redis_url, config.redis_timeout_seconds)
    flows = FlowController(config, kube, pool)
    flows.start()
    memo["config"], memo["kube"], memo["pool"], memo["flows"] = config, kube, pool, flows
    memo["kopf_storages"] = (progress, diffbase)
    memo["workerpools"] = WorkerPoolController(config, kube, pool)
    memo["cronflows"] = CronFlowController(kube)
    flows.on_submit = memo["workerpools"].notify_work
    memo["workerpools"].on_serving = flows.statuses.no_workers.pool_serves


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo["flows"].close()
    await memo["workerpools"].close()
    await memo["cronflows"].close()
    await memo["pool"].close()
    await memo["kube"].close()
