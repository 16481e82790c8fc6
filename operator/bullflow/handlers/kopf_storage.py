"""kopf's diff-base as a digest: a Flow's spec can be large (thousands of jobs), and kopf's
default last-handled-configuration annotation would store a second full copy of it, pushing
the object toward etcd's 1.5 MiB limit. bullflow has no update handlers that need the old
spec (Flow specs are immutable), so a digest is all kopf needs to tell "seen" from "changed"."""

from __future__ import annotations

import hashlib
import json

import kopf
from kopf._cogs.structs import bodies, patches


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def fetch(self, *, body: bodies.Body) -> bodies.BodyEssence | None:
        stored = None
        for full_key in self.make_keys(self.key, body=body):
            stored = body.metadata.annotations.get(full_key) or stored
        if stored is None:
            return None
        current = self.build(body=body)
        if stored.strip() == _digest(current):
            return current  # unchanged since last handled: no diff
        return bodies.BodyEssence()  # changed: kopf sees a diff from "nothing"

    def store(
        self, *, body: bodies.Body, patch: patches.Patch, essence: bodies.BodyEssence
    ) -> None:
        for full_key in self.make_keys(self.key, body=body):
            patch.metadata.annotations[full_key] = _digest(essence)
        self._store_marker(prefix=self.prefix, patch=patch, body=body)


def _digest(essence: object) -> str:
    text = json.dumps(essence, separators=(",", ":"), sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
