"""The BullMQ key prefix rule on Redis Cluster: the prefix must carry a hash tag.

Redis Cluster hashes only the part of a key between the first `{` and the first `}` after it
(when that part is not empty). BullMQ's keys are `<prefix>:<queue>:<id>`, and a flow's Lua
scripts touch keys of several queues (a parent and its children) in one call, which Redis
Cluster allows only when every key hashes to the same slot. So the tag must sit entirely inside
the prefix: `{bull}` puts every queue of that prefix in one slot; `bull` spreads them over the
cluster and the first multi-queue script fails with CROSSSLOT.

Pure functions, shared by the worker runtime and the operator (which imports them from
`bullflow_worker`).
"""

from __future__ import annotations


def prefix_hash_tag(prefix: str) -> str | None:
    """The hash tag Redis Cluster would hash for keys starting with `prefix`, or None.

    None when the prefix holds no complete, non-empty `{...}`: then the slot of a key would
    depend on the rest of the key (queue name, job id), not on the prefix.
    """
    start = prefix.find("{")
    if start < 0:
        return None
    end = prefix.find("}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return prefix[start + 1 : end]


def suggested_prefix(prefix: str) -> str:
    """`prefix` made usable on Redis Cluster: its text wrapped in one hash tag (`bull` ->
    `{bull}`), or `{bull}` when nothing is left of it."""
    text = prefix.replace("{", "").replace("}", "")
    return "{" + (text or "bull") + "}"


def cluster_prefix_problem(prefix: str, setting: str = "spec.prefix") -> str | None:
    """Why `prefix` cannot be used on Redis Cluster, with the fix for `setting` (the field or
    flag that holds it, e.g. `spec.prefix` or `--prefix`); None when it can."""
    if prefix_hash_tag(prefix) is not None:
        return None
    fix = suggested_prefix(prefix)
    return (
        f"prefix {prefix!r} has no hash tag: on Redis Cluster every key of a flow must be in one "
        f'hash slot, so the prefix needs a {{...}} tag; set {setting}: "{fix}"'
    )
