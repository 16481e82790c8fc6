"""The Secret that carries the operator's default Redis URL to a pool's workers, kept in step.

What to do with it (create, update, keep, stay off someone else's) is services/connection_secret;
this module reads and writes it, at most once per SECRET_RECHECK_SECONDS per pool.
"""

from __future__ import annotations

import logging
import time

from .. import GROUP, VERSION
from ..logs import about
from ..services.connection_secret import (
    SecretAction,
    build_default_connection_secret,
    default_connection_secret_name,
    secret_action,
)
from ..services.worker_deployment import POOL_LABEL, ManagedSecret
from ..storage.kube import ObjectRef
from ..storage.kube_apps import KubeApps
from .connections import check_url

log = logging.getLogger(__name__)
# The managed default-connection Secret is read again at most this often: a hand-deleted or
# edited one is restored within this time, without a GET per turn.
SECRET_RECHECK_SECONDS = 30.0


class ManagedSecretConflict(Exception):
    """A Secret with the managed Secret's name exists and is not this WorkerPool's."""


class DefaultSecrets:
    """The managed Secrets of all pools, each remembered with the time it was last checked."""

    def __init__(self, apps: KubeApps, default_url: str | None) -> None:
        self.apps = apps
        self.default_url = default_url
        self._checked: dict[str, tuple[ManagedSecret, float]] = {}  # by pool uid

    async def ensure(self, ref: ObjectRef) -> ManagedSecret:
        """Create or update the pool's Secret only when what the API server holds differs.

        Raises ManagedSecretConflict if a Secret of that name belongs to someone else."""
        now = time.monotonic()
        if (known := self._checked.get(ref.uid)) and now - known[1] < SECRET_RECHECK_SECONDS:
            return known[0]
        assert self.default_url
        wanted = build_default_connection_secret(
            ref.namespace,
            ref.name,
            ref.uid,
            check_url(self.default_url),
            {"app.kubernetes.io/name": "bullflow-worker", POOL_LABEL: ref.name},
            f"{GROUP}/{VERSION}",
        )
        name = default_connection_secret_name(ref.name)
        existing = await self.apps.secret(ref.namespace, name)
        action = secret_action(existing, wanted, ref.uid)
        if action is SecretAction.CONFLICT:
            raise ManagedSecretConflict(
                f"Secret {ref.namespace}/{name} exists and is not this WorkerPool's: bullflow "
                "keeps the default Redis URL for the workers there. Rename or delete that "
                "Secret, or set spec.connection"
            )
        if action is SecretAction.CREATE:
            version = await self.apps.create_secret(wanted)
        elif action is SecretAction.UPDATE:
            assert existing is not None
            version = await self.apps.replace_secret(wanted, existing.resource_version)
        else:
            assert existing is not None
            version = existing.resource_version
        if action is not SecretAction.KEEP:
            done = "created" if action is SecretAction.CREATE else "updated"
            log.info(
                "WorkerPool %s/%s: %s Secret %s",
                ref.namespace,
                ref.name,
                done,
                name,
                extra=about(ref.namespace, ref.name),
            )
        secret = ManagedSecret(name, version)
        self._checked[ref.uid] = (secret, now)
        return secret

    def forget(self, uid: str) -> None:
        self._checked.pop(uid, None)
