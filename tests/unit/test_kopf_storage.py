"""kopf's progress and diff-base in memory: kopf sees "new" once per object and generation, and
writes nothing to the object except its retry touch."""

from __future__ import annotations

from typing import Any

from kopf._cogs.structs import bodies, ids, patches

from bullflow.kopf_compat.storage import MemoryDiffBaseStorage, MemoryProgressStorage


def body(uid: str, generation: int, annotations: dict[str, str] | None = None) -> bodies.Body:
    raw: dict[str, Any] = {
        "metadata": {"uid": uid, "generation": generation, "annotations": annotations or {}},
        "spec": {"big": list(range(10))},
        "status": {"phase": "Running"},
    }
    return bodies.Body(raw)


def test_diff_base_is_the_generation_and_never_patches():
    storage = MemoryDiffBaseStorage()
    first = body("u1", 1)
    assert storage.fetch(body=first) is None  # new: kopf's create (= resume) cause
    patch = patches.Patch()
    storage.store(body=first, patch=patch, essence=storage.build(body=first))
    assert not patch
    assert storage.fetch(body=body("u1", 1)) == storage.build(body=body("u1", 1))  # no diff
    assert storage.fetch(body=body("u1", 2)) != storage.build(body=body("u1", 2))  # spec changed
    storage.forget("u1")
    assert storage.fetch(body=first) is None and len(storage) == 0


def test_progress_is_kept_per_object_and_handler_and_purged():
    storage = MemoryProgressStorage(prefix="bullflow.io")
    b, key, patch = body("u1", 1), ids.HandlerId("flow_reconcile"), patches.Patch()
    assert storage.fetch(key=key, body=b) is None
    storage.store(key=key, record={"retries": 2, "delayed": "later"}, body=b, patch=patch)
    assert storage.fetch(key=key, body=body("u1", 1)) == {"retries": 2, "delayed": "later"}
    assert storage.fetch(key=key, body=body("u2", 1)) is None
    assert not patch
    storage.purge(key=key, body=b, patch=patch)
    assert storage.fetch(key=key, body=b) is None and len(storage) == 0
    storage.store(key=key, record={"retries": 1}, body=b, patch=patch)
    storage.forget("u1")
    assert len(storage) == 0


def test_the_retry_touch_is_the_one_write():
    storage = MemoryProgressStorage(prefix="bullflow.io")
    patch = patches.Patch()
    storage.touch(body=body("u1", 1), patch=patch, value="2026-01-01T00:00:00")
    assert patch["metadata"]["annotations"]["bullflow.io/touch-dummy"] == "2026-01-01T00:00:00"
    cleared = patches.Patch()  # kopf clears the dummy only when it is there
    storage.touch(body=body("u1", 1), patch=cleared, value=None)
    assert not cleared
