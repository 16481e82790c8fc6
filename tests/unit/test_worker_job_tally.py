from bullflow_worker.job_tally import JobTally, QueueTally


def test_take_sums_per_queue_in_first_seen_order_and_resets() -> None:
    tally = JobTally()
    assert tally.take() == []
    for _ in range(3):
        tally.completed("b")
    tally.failed("a")
    tally.completed("a")
    assert tally.take() == [QueueTally("b", 3, 0), QueueTally("a", 1, 1)]
    assert tally.take() == []  # nothing since the last summary: no line
    tally.failed("b")
    assert tally.take() == [QueueTally("b", 0, 1)]
