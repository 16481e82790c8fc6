"""Built-in processors of bullflow_worker.processors, with a fake job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bullflow_worker import processors

pytestmark = pytest.mark.unit


class FakeJob:
    def __init__(self, data: Any, children: dict[str, Any] | None = None, job_id: str = "1"):
        self.id = job_id
        self.data = data
        self._children = children or {}

    async def getChildrenValues(self) -> dict[str, Any]:
        return dict(self._children)


async def test_echo_and_sleep() -> None:
    assert await processors.echo(FakeJob({"a": 1})) == {"a": 1}
    assert await processors.sleep(FakeJob({"seconds": 0.01, "k": "v"})) == {
        "seconds": 0.01,
        "k": "v",
    }


async def test_sum_children() -> None:
    children = {
        "bull:q:1": 2,
        "bull:q:2": 3.5,
        "bull:q:3": "x",
        "bull:q:4": True,
        "bull:q:5": {"n": 1},
        "bull:q:6": None,
    }
    assert await processors.sum_children(FakeJob({"value": 1}, children)) == 6.5
    assert await processors.sum_children(FakeJob({}, {"a": 4})) == 4
    assert await processors.sum_children(FakeJob(None)) == 0


async def test_collect_children() -> None:
    kids = {"bull:q:1": {"a": 1}, "bull:q:2": 5}
    assert await processors.collect_children(FakeJob({}, kids)) == kids


async def test_fail() -> None:
    with pytest.raises(processors.ProcessorFailure, match=r"^nope$"):
        await processors.fail(FakeJob({"reason": "nope"}))
    with pytest.raises(processors.ProcessorFailure, match="on purpose"):
        await processors.fail(FakeJob(None))


async def test_count_executions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "exec.log"
    monkeypatch.setenv(processors.EXEC_LOG_ENV, str(log))
    for i in ("1", "2", "1"):
        assert await processors.count_executions(FakeJob({"i": i}, job_id=i)) == {"i": i}
    assert log.read_text().split() == ["1", "2", "1"]
    monkeypatch.delenv(processors.EXEC_LOG_ENV)
    with pytest.raises(processors.ProcessorFailure, match="BULLFLOW_EXEC_LOG"):
        await processors.count_executions(FakeJob({}))
