"""kopf handlers for FlowTemplate: a template created or changed wakes the Flows waiting for it."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION
from ..controllers.flow import FlowController
from ..controllers.flow_template import TEMPLATE_PLURAL


# An event handler: nothing of the template's own is stored (no progress, no diff base), and a
# template with no Flow waiting for it costs a dict lookup.
@kopf.on.event(
    GROUP, VERSION, TEMPLATE_PLURAL, when=lambda type, **_: type in (None, "ADDED", "MODIFIED")
)
async def flowtemplate_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    flows: FlowController = memo["flows"]
    meta = body["metadata"]
    flows.templates.template_changed(meta["namespace"], meta["name"], flows.reconcile)
