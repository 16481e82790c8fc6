"""What a change of the server holding a prefix's keys means (storage/redis_identity.py)."""

from __future__ import annotations

import pytest

from bullflow.storage.redis_identity import NO_REPLID, Change, ServerIdentity, classify_change

OLD_REPLID = "5c6d5e83d3e7e07f2e8c3a720cbdb29de281d12d"
NEW_REPLID = "f26ed4b12169b584a80db743b6e8386bf10777d4"
MASTER = ServerIdentity("10.0.0.1:6379", "run-a", OLD_REPLID, NO_REPLID)


@pytest.mark.parametrize(
    ("after", "change"),
    [
        # the same process, whatever else it says
        (MASTER, Change.SAME),
        # CLUSTER FAILOVER / Sentinel promotion: the replica keeps the old id as replid2
        (ServerIdentity("10.0.0.2:6379", "run-b", NEW_REPLID, OLD_REPLID), Change.FAILOVER),
        # a replica not promoted (yet) shares its master's replication id
        (ServerIdentity("10.0.0.2:6379", "run-b", OLD_REPLID, NO_REPLID), Change.FAILOVER),
        # the same address, a new process with a new history: restarted (data of unknown age)
        (ServerIdentity("10.0.0.1:6379", "run-c", NEW_REPLID, NO_REPLID), Change.RESTARTED),
        # another master with another history: the slot was moved to it
        (ServerIdentity("10.0.0.3:6379", "run-d", NEW_REPLID, NO_REPLID), Change.MOVED),
    ],
    ids=["same", "promoted", "replica", "restarted", "moved"],
)
def test_a_change_of_server_is_classified_by_run_id_then_replication_history(
    after: ServerIdentity, change: Change
):
    assert classify_change(MASTER, after) is change
    assert change.reread is (change is not Change.SAME)


def test_empty_replication_ids_never_make_a_lineage():
    """Two fresh servers both saying "no previous id" (or a server too old to say) are not
    replicas of each other: that would hide a restart."""
    before = ServerIdentity("h:1", "run-a", NO_REPLID, NO_REPLID)
    after = ServerIdentity("h:1", "run-b", "", NO_REPLID)
    assert classify_change(before, after) is Change.RESTARTED


def test_identity_from_info_takes_run_id_and_replication_ids():
    info = {"run_id": "r", "master_replid": OLD_REPLID, "master_replid2": NO_REPLID, "x": 1}
    assert ServerIdentity.from_info("h:1", info) == ServerIdentity(
        "h:1", "r", OLD_REPLID, NO_REPLID
    )


def test_the_empty_replication_id_redis_py_parsed_as_a_number_is_no_id():
    info = {"run_id": "r", "master_replid": OLD_REPLID, "master_replid2": 0}
    assert ServerIdentity.from_info("h:1", info).replid2 == NO_REPLID
