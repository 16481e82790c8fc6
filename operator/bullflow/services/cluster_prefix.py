"""A prefix without a hash tag is refused on Redis Cluster, before anything is written. Pure.

The rule (which part of a key Redis Cluster hashes, and the fix to suggest) is the worker's
`bullflow_worker.cluster_prefix`, shared so that the worker and the operator refuse the same
prefixes with the same words. Here: when it applies (a Cluster connection only) and the reason
the condition carries. A Flow so refused is never submitted: its BullMQ scripts would fail with
CROSSSLOT on the first multi-queue call, and its submission marker (same transaction) could not
be in its jobs' slot.
"""

from __future__ import annotations

from bullflow_worker.cluster_prefix import cluster_prefix_problem, prefix_hash_tag

__all__ = ["CLUSTER_PREFIX_NOT_HASH_TAGGED", "cluster_prefix_refusal", "prefix_hash_tag"]

CLUSTER_PREFIX_NOT_HASH_TAGGED = "ClusterPrefixNotHashTagged"


def cluster_prefix_refusal(topology: str, prefix: str, setting: str = "spec.prefix") -> str | None:
    """Why `prefix` cannot be used on this connection (`topology`: "standalone", "sentinel" or
    "cluster"), with the fix for `setting`; None when it can."""
    if topology != "cluster":
        return None
    return cluster_prefix_problem(prefix, setting)
