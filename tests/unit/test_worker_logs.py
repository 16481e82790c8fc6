"""The worker's log lines share the operator's keys and time format (one pipeline reads both)."""

from __future__ import annotations

import json
import logging
import re

from bullflow import logs as operator_logs
from bullflow_worker.logs import JsonFormatter, TextFormatter

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("bullflow_worker.test")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, "job %s", ("j1",), None, extra=extra
    )


def test_worker_and_operator_json_keys_agree():
    worker = json.loads(JsonFormatter().format(record(queue="q")))
    operator = json.loads(operator_logs.JsonFormatter().format(record(queue="q")))
    assert list(worker) == list(operator) == ["time", "level", "logger", "message", "queue"]
    assert re.fullmatch(TIME, worker["time"]) and re.fullmatch(TIME, operator["time"])
    assert worker["level"] == operator["level"] == "warning"
    assert worker["message"] == operator["message"] == "job j1"


def test_worker_text_line_starts_with_time_and_level():
    line = TextFormatter().format(record(job_id="j1"))
    assert re.fullmatch(TIME + r" WARNING job j1 job_id=j1", line), line
