"""kopf handlers for CronFlow: thin wrappers around CronFlowController."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION
from ..controllers.cronflow import CronFlowController
from ..kopf_compat.storage import forget_object
from ..services.cronflow_policy import CRONFLOW_LABEL, TERMINAL_PHASES


def _controller(memo: kopf.Memo) -> CronFlowController:
    return memo["cronflows"]  # type: ignore[no-any-return,unused-ignore]


# Every event (the initial listing at start included, which is how runs missed during a
# downtime are caught up): the reconcile is idempotent and writes only what changed.
@kopf.on.event(GROUP, VERSION, "cronflows")
async def cronflow_changed(body: kopf.Body, memo: kopf.Memo, type: str | None, **_: Any) -> None:
    if type == "DELETED":
        forget_object(memo, body)
        _controller(memo).forget(body["metadata"]["uid"])
        return
    await _controller(memo).reconcile(body)


def _run_ended(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return type == "DELETED" or (body.get("status") or {}).get("phase") in TERMINAL_PHASES


# A run that ended or went away changes the CronFlow's active list, last success and history.
@kopf.on.event(GROUP, VERSION, "flows", labels={CRONFLOW_LABEL: kopf.PRESENT}, when=_run_ended)
async def cronflow_run_ended(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _controller(memo).wake(
        body["metadata"]["namespace"], body["metadata"]["labels"][CRONFLOW_LABEL]
    )
