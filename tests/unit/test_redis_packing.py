"""Commands packed with hiredis (BullRedis's connections) are byte for byte redis-py's own."""

import json

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError

from bullflow.models.flow import FlowSpec
from bullflow.services.flowtree import to_flowproducer
from bullflow.storage.redis_jobs import BullRedis, events_key, marker_key, with_hiredis_packing

pytestmark = pytest.mark.unit

UNREACHABLE = "redis://127.0.0.1:9/0"  # nothing is sent: commands are only queued and packed


async def submission_commands() -> list[tuple]:
    """The commands of a real submission pipeline (BullMQ's scripts and their arguments)."""
    spec = FlowSpec.model_validate(
        {
            "prefix": "pk",
            "root": {
                "name": "sum",
                "queueName": "parents",
                "data": {"text": "ünïcode ✓", "n": 3, "ratio": 0.1, "nested": [1, None, True]},
                "opts": {"priority": 3, "delay": 1500, "attempts": 2},
                "children": [
                    {"name": f"c{i}", "queueName": "kids", "data": {"i": i}} for i in range(5)
                ],
            },
        }
    )
    conn = BullRedis(UNREACHABLE)
    producer = conn.producer("pk")
    entries: list[dict] = []
    for tree in to_flowproducer(spec, "uid-1"):
        await producer._queue_tree(entries, tree, None)
    pipe = conn.client.pipeline(transaction=True)
    for entry in entries:
        scripts = entry["job"].queue.backend.scripts
        if entry["is_parent"]:
            await scripts.addParentJob(entry["job"], pipe)
        else:
            await scripts.addJob(entry["job"], pipe)
    pipe.set(marker_key("pk", "uid-1"), json.dumps({"uid": "uid-1", "jobs": 6}))
    pipe.xrevrange(events_key("pk", "kids"), count=1)
    commands = [args for args, _ in pipe.command_stack]
    await conn.client.aclose()
    return commands


EDGE_CASES = [
    ("ZADD", "k", 0.1, "m", 1e20, -0.0, 3, -7),
    ("SET", "ünï ✓", b"\xff\x00binary", bytearray(b"ba"), memoryview(b"mv")),
    ("CONFIG GET", "maxmemory"),  # a multi-word command name is split, as redis-py does
    ("SET", "big", "x" * 100_000),  # above redis-py's buffer cutoff
]


async def test_a_submission_packs_to_the_same_bytes():
    commands = await submission_commands()
    assert len(commands) == 8 and commands[0][0] == "EVALSHA"
    python = aioredis.Connection()
    hiredis = with_hiredis_packing(aioredis.Connection)()
    assert b"".join(hiredis.pack_commands(commands)) == b"".join(python.pack_commands(commands))
    for command in commands + EDGE_CASES:
        assert b"".join(hiredis.pack_command(*command)) == b"".join(python.pack_command(*command))


@pytest.mark.parametrize("bad", [True, None, object(), [1]])
def test_what_redis_py_refuses_is_still_refused(bad):
    with pytest.raises(DataError):
        aioredis.Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        with_hiredis_packing(aioredis.Connection)().pack_command("SET", "k", bad)


def test_every_connection_kind_keeps_its_class():
    for kind in (aioredis.Connection, aioredis.SSLConnection, aioredis.UnixDomainSocketConnection):
        packing = with_hiredis_packing(kind)
        assert issubclass(packing, kind) and packing is with_hiredis_packing(kind)
        assert with_hiredis_packing(packing) is packing
    for url, kind in (
        ("redis://127.0.0.1:9/0", aioredis.Connection),
        ("rediss://127.0.0.1:9/0", aioredis.SSLConnection),
        ("unix:///tmp/none.sock", aioredis.UnixDomainSocketConnection),
    ):
        pool = BullRedis(url).client.connection_pool
        assert issubclass(pool.connection_class, kind)
        assert pool.connection_class.pack_command is not kind.pack_command
