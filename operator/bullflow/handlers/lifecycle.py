"""Operator start-up and shutdown: settings, shared clients, controllers."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ..config import Settings
from ..controllers.connections import RedisPool
from ..controllers.flow import FlowController
from ..controllers.workerpool import WorkerPoolController
from ..storage.kube import KubeApi
from .kopf_storage import DigestDiffBaseStorage

ANNOTATION_PREFIX = "bullflow.io"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Progress and diff-base in annotations: the status belongs to bullflow alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.posting.level = logging.WARNING  # our own Events carry the story
    settings.watching.server_timeout = 300
    # At most 200 objects in flight, but a per-object worker holds its slot until it has been
    # idle for `idle_timeout` (kopf's default 5 s): with the default, a burst of creations is
    # processed at ~200 / 5 s = 40 objects/s whatever the CPU. Free the slot after 0.5 s.
    # (`settings.batching` is kopf's deprecated alias of `settings.queueing`.)
    settings.queueing.worker_limit = 200
    settings.queueing.idle_timeout = 0.5
    config = Settings()
    kube = await KubeApi.connect()
    pool = RedisPool(kube, config.redis_url, config.redis_timeout_seconds)
    flows = FlowController(config, kube, pool)
    flows.tracker.start()
    memo["config"], memo["kube"], memo["pool"], memo["flows"] = config, kube, pool, flows
    memo["workerpools"] = WorkerPoolController(config, kube, pool)
    flows.on_submit = memo["workerpools"].notify_work


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo["flows"].close()
    await memo["workerpools"].close()
    await memo["pool"].close()
    await memo["kube"].close()
