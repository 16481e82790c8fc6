"""kopf handlers for Flow: thin wrappers around FlowController."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION
from ..controllers.flow import FlowController, has_finalizer
from ..controllers.flow_operations import has_pending
from ..kopf_compat.storage import forget_object


def _controller(memo: kopf.Memo) -> FlowController:
    controller: FlowController = memo["flows"]
    return controller


@kopf.on.resume(GROUP, VERSION, "flows")
@kopf.on.create(GROUP, VERSION, "flows")
async def flow_reconcile(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    await _controller(memo).reconcile(body, retry)


# The finalizer is bullflow's own, added after the submission (FlowController.reconcile), not
# kopf's up-front one: matching only Flows that carry it keeps kopf from adding it first.
@kopf.on.delete(GROUP, VERSION, "flows", when=lambda body, **_: has_finalizer(body))
async def flow_delete(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    await _controller(memo).delete(body, retry)


@kopf.on.event(GROUP, VERSION, "flows", when=lambda type, **_: type == "DELETED")
async def flow_gone(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    forget_object(memo, body)
    await _controller(memo).gone(body)


# A retry/stop annotation not yet handled (status.lastHandledRetry/Stop). An event handler, not
# a change handler: kopf's diff base here is the generation alone (kopf_compat.storage), and
# annotations do not change it. The controller drops a value it handled already.
@kopf.on.event(
    GROUP,
    VERSION,
    "flows",
    when=lambda type, body, **_: type != "DELETED" and has_pending(body),
)
async def flow_operation(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller = _controller(memo)
    if controller.operations.is_pending(body):
        await controller.operate(body)


# FlowTemplate events wake the Flows waiting for their template: registered with the Flow
# handlers, which they serve.
from . import flowtemplate  # noqa: E402, F401
