"""The Secret that carries the operator's default Redis URL to a WorkerPool's workers.

A WorkerPool without spec.connection runs its workers on the operator's own default Redis
(BULLFLOW_REDIS_URL), whose URL may hold a password. A plain env `value` would show it to
anyone who can read Deployments or Pods, so the operator writes it into a Secret of the pool's
namespace and the Deployment references it (secretKeyRef). The Secret is owned by the
WorkerPool (the garbage collector deletes them together) and labelled as bullflow's; a Secret
of that name that is not this pool's is never touched.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import Enum
from typing import Any

URL_KEY = "url"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "bullflow"


@dataclass(frozen=True)
class SecretState:
    """What the API server holds under the managed Secret's name."""

    data: dict[str, str]  # base64, as the API carries it
    labels: dict[str, str]
    owner_uids: frozenset[str]
    resource_version: str


class SecretAction(Enum):
    CREATE = "create"
    UPDATE = "update"
    KEEP = "keep"
    CONFLICT = "conflict"  # someone else's Secret has that name: leave it alone


def default_connection_secret_name(pool: str) -> str:
    # Beside the owned Deployment's name (<pool>-workers), so that it does not take a name a
    # user is likely to have chosen for a Secret of their own (<pool>-redis).
    return f"{pool}-workers-redis"


def build_default_connection_secret(
    namespace: str,
    pool: str,
    pool_uid: str,
    url: str,
    labels: dict[str, str],
    owner_api_version: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": default_connection_secret_name(pool),
            "namespace": namespace,
            "labels": {**labels, MANAGED_BY_LABEL: MANAGED_BY},
            "ownerReferences": [
                {
                    "apiVersion": owner_api_version,
                    "kind": "WorkerPool",
                    "name": pool,
                    "uid": pool_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {URL_KEY: base64.b64encode(url.encode()).decode()},
    }


def secret_action(
    existing: SecretState | None, wanted: dict[str, Any], pool_uid: str
) -> SecretAction:
    """Create it, rewrite it (its URL or our labels differ), keep it, or stay off it."""
    if existing is None:
        return SecretAction.CREATE
    if pool_uid not in existing.owner_uids:
        return SecretAction.CONFLICT
    labels_kept = all(existing.labels.get(k) == v for k, v in wanted["metadata"]["labels"].items())
    if existing.data == wanted["data"] and labels_kept:
        return SecretAction.KEEP
    return SecretAction.UPDATE
