"""kopf handlers for WorkerPool: a daemon per pool running the scaling loop, plus wake-ups."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION
from ..controllers.workerpool import WorkerPoolController
from ..kopf_compat.storage import forget_object
from ..services.worker_deployment import POOL_LABEL


def _controller(memo: kopf.Memo) -> WorkerPoolController:
    return memo["workerpools"]  # type: ignore[no-any-return,unused-ignore]


@kopf.daemon(GROUP, VERSION, "workerpools", cancellation_timeout=10.0)
async def workerpool_loop(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    await _controller(memo).run(body, stopped)


@kopf.on.event(GROUP, VERSION, "workerpools")
async def workerpool_changed(body: kopf.Body, memo: kopf.Memo, type: str | None, **_: Any) -> None:
    """Spec edits and deletion: turn the loop now instead of at the next poll."""
    if type == "DELETED":
        forget_object(memo, body)
    _controller(memo).wake(body["metadata"]["uid"])


@kopf.on.event("apps", "v1", "deployments", labels={POOL_LABEL: kopf.PRESENT})
async def owned_deployment_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A hand edit of an owned Deployment: the loop compares and re-applies at once."""
    for owner in body["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == "WorkerPool" and owner.get("apiVersion", "").startswith(GROUP):
            _controller(memo).wake(owner["uid"])
