"""kopf handlers for Flow: thin wrappers around FlowController."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION
from ..controllers.flow import FlowController


def _controller(memo: kopf.Memo) -> FlowController:
    controller: FlowController = memo["flows"]
    return controller


@kopf.on.resume(GROUP, VERSION, "flows")
@kopf.on.create(GROUP, VERSION, "flows")
async def flow_reconcile(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    await _controller(memo).reconcile(body, retry)


@kopf.on.delete(GROUP, VERSION, "flows")
async def flow_delete(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    await _controller(memo).delete(body, retry)
