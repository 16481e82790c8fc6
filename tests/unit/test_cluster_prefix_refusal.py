"""The operator refuses an untagged prefix on a Cluster only (services/cluster_prefix.py)."""

from __future__ import annotations

import pytest

from bullflow.services.cluster_prefix import cluster_prefix_refusal, prefix_hash_tag


@pytest.mark.parametrize(
    ("prefix", "tag"),
    [
        ("{bull}", "bull"),
        ("app:{bull}", "bull"),
        ("{a}{b}", "a"),  # the first {...} counts
        ("bull", None),
        ("{}bull", None),  # empty: Redis hashes the whole key
        ("{}{bull}", None),  # the first { closes at once: the whole key is hashed
        ("{bull", None),  # not closed inside the prefix: the queue name would decide the slot
        ("bull}", None),
    ],
)
def test_hash_tag_follows_redis_cluster_rules(prefix: str, tag: str | None):
    assert prefix_hash_tag(prefix) == tag


def test_an_untagged_prefix_is_refused_on_a_cluster_with_the_fix():
    message = cluster_prefix_refusal("cluster", "bull")
    assert message is not None
    assert 'spec.prefix: "{bull}"' in message and "hash tag" in message


@pytest.mark.parametrize("topology", ["standalone", "sentinel"])
def test_any_prefix_is_fine_off_a_cluster(topology: str):
    assert cluster_prefix_refusal(topology, "bull") is None


def test_a_tagged_prefix_is_fine_on_a_cluster():
    assert cluster_prefix_refusal("cluster", "{bull}") is None
    assert cluster_prefix_refusal("cluster", "team-a:{jobs}") is None
