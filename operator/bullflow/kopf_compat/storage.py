"""kopf's handler progress and diff-base kept in memory instead of in annotations.

kopf persists both in the object by default, which costs one extra PATCH of the main resource
per handled object (the last-handled-configuration and progress annotations): under a burst of
Flow creations that write was as expensive for the API server as the creation itself. bullflow
does not need them to survive a restart: every handler is an idempotent reconcile whose state
lives in the status and in Redis, and a restarted operator treats every object as new (create =
resume). Spec changes are all that matter (Flow specs are immutable, WorkerPool specs are
re-read by their daemon), so the essence kopf compares is the generation alone: no deep copy of
a 10,000-job spec on every watch event.

The one write kept is kopf's "touch" annotation: after a handler asked to be retried later
(TemporaryError with a delay), kopf touches the object to get a fresh watch event and retry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf
from kopf._cogs.configs.progress import ProgressRecord
from kopf._cogs.structs import bodies, dicts, ids, patches


def _uid(body: bodies.Body) -> str:
    return str(body.metadata.get("uid", ""))


class MemoryDiffBaseStorage(kopf.DiffBaseStorage):
    """The last handled generation of every object, by uid."""

    def __init__(self) -> None:
        super().__init__()
        self._generations: dict[str, Any] = {}

    def build(
        self,
        *,
        body: bodies.Body,
        extra_fields: Iterable[dicts.FieldSpec] | None = None,
    ) -> bodies.BodyEssence:
        return _essence(body.metadata.get("generation"))

    def fetch(self, *, body: bodies.Body) -> bodies.BodyEssence | None:
        uid = _uid(body)
        if uid not in self._generations:
            return None
        return _essence(self._generations[uid])

    def store(
        self, *, body: bodies.Body, patch: patches.Patch, essence: bodies.BodyEssence
    ) -> None:
        self._generations[_uid(body)] = cast(dict[str, Any], essence).get("generation")

    def forget(self, uid: str) -> None:
        self._generations.pop(uid, None)

    def __len__(self) -> int:
        return len(self._generations)


def _essence(generation: Any) -> bodies.BodyEssence:
    return cast(bodies.BodyEssence, {"generation": generation})


class MemoryProgressStorage(kopf.ProgressStorage):
    """Handler progress (retries, delays, outcomes) by (uid, handler id)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._records: dict[str, dict[str, ProgressRecord]] = {}
        self._touch = kopf.AnnotationsProgressStorage(prefix=prefix)

    def fetch(self, *, key: ids.HandlerId, body: bodies.Body) -> ProgressRecord | None:
        return self._records.get(_uid(body), {}).get(key)

    def store(
        self,
        *,
        key: ids.HandlerId,
        record: ProgressRecord,
        body: bodies.Body,
        patch: patches.Patch,
    ) -> None:
        self._records.setdefault(_uid(body), {})[key] = ProgressRecord(**record)

    def purge(self, *, key: ids.HandlerId, body: bodies.Body, patch: patches.Patch) -> None:
        records = self._records.get(_uid(body))
        if records is not None:
            records.pop(key, None)
            if not records:
                del self._records[_uid(body)]

    def touch(self, *, body: bodies.Body, patch: patches.Patch, value: str | None) -> None:
        self._touch.touch(body=body, patch=patch, value=value)

    def clear(self, *, essence: bodies.BodyEssence) -> bodies.BodyEssence:
        return essence  # our essence holds no annotations to strip

    def forget(self, uid: str) -> None:
        self._records.pop(uid, None)

    def __len__(self) -> int:
        return len(self._records)


def forget_object(memo: kopf.Memo, body: bodies.Body) -> None:
    """Drop a deleted object's in-memory kopf state."""
    for storage in memo.get("kopf_storages", ()):
        storage.forget(_uid(body))
