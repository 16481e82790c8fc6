"""The operator's log lines (bullflow/logs.py): real records through real loggers and handlers."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import kopf
import pytest
from kopf._core.actions.loggers import ObjectLogger

from bullflow import logs
from bullflow.redaction import install_log_redaction, remember_url

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
BODY = kopf.Body(
    {
        "apiVersion": "bullflow.io/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": "basic", "namespace": "team-a", "uid": "u1"},
    }
)


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    """The root logger with one stream handler, formatted by logs.install (as the operator)."""
    root, objects = logging.getLogger(), logging.getLogger("kopf.objects")
    saved = (root.handlers[:], root.level, objects.filters[:])
    stream = io.StringIO()
    root.handlers[:] = [logging.StreamHandler(stream)]
    root.setLevel(logging.DEBUG)
    yield stream
    root.handlers[:], root.level = saved[0], saved[1]
    objects.filters[:] = saved[2]


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_text_line_has_time_level_object_and_message(capture):
    logs.install("text")
    ObjectLogger(body=BODY, settings=kopf.OperatorSettings()).warning("Handler 'x' is slow")
    logging.getLogger("bullflow.test").info("plain line")
    logging.getLogger("bullflow.test").info("own line", extra=logs.about("ns", "pool"))
    first, second, third = lines(capture)
    assert re.fullmatch(TIME + r" WARNING \[team-a/basic\] Handler 'x' is slow", first), first
    assert re.fullmatch(TIME + r" INFO    plain line", second), second
    assert third.endswith(" INFO    [ns/pool] own line"), third


def test_json_line_has_the_fields_as_keys(capture):
    logs.install("json")
    ObjectLogger(body=BODY, settings=kopf.OperatorSettings()).info("Handler 'x' succeeded.")
    logging.getLogger("bullflow.test").warning("no object", extra={"attempt": 3})
    first, second = (json.loads(line) for line in lines(capture))
    assert re.fullmatch(TIME, first.pop("time"))
    assert first == {
        "level": "info",
        "logger": "kopf.objects",
        "namespace": "team-a",
        "name": "basic",
        "message": "Handler 'x' succeeded.",
    }
    assert "namespace" not in second and second["attempt"] == 3 and second["level"] == "warning"


def test_cluster_scoped_object_shows_its_name_only(capture):
    logs.install("text")
    logging.getLogger("bullflow.test").info("m", extra=logs.about(None, "cluster-thing"))
    assert lines(capture)[0].endswith("[cluster-thing] m")


def test_exception_goes_with_its_line(capture):
    logs.install("json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("bullflow.test").exception("it failed")
    (doc,) = (json.loads(line) for line in lines(capture))
    assert doc["message"] == "it failed" and "ValueError: boom" in doc["exc"]


@pytest.mark.parametrize(
    ("message", "retry"),
    [
        ("Handler 'flow_reconcile' failed temporarily: redis down", True),
        ("Handler 'h' failed with an exception and will try again in 60 seconds: boom", True),
        ("Handler 'h' failed temporarily but will exceed 3 retries: boom", False),
        ("Handler 'h' failed temporarily but will time out after 10 seconds: boom", False),
        ("Handler 'h' failed with an exception and will stop now: boom", False),
        ("Handler 'h' failed permanently: bad spec", False),
    ],
)
def test_is_retry_tells_a_retry_from_a_handler_that_gave_up(message, retry):
    assert logs.is_retry(message) is retry


def test_kopf_retries_are_warnings_permanent_failures_stay_errors(capture):
    logs.install("json")
    objlog = ObjectLogger(body=BODY, settings=kopf.OperatorSettings())
    objlog.error("Handler 'flow_reconcile' failed temporarily: redis down")
    objlog.error("Handler 'flow_reconcile' failed permanently: bad spec")
    retry, permanent = (json.loads(line) for line in lines(capture))
    assert retry["level"] == "warning" and retry["name"] == "basic"
    assert permanent["level"] == "error"


def test_redaction_still_applies_to_every_formatted_line(capture):
    install_log_redaction()
    remember_url("redis://:s3cr3t-pw@redis:6379")
    for fmt in ("text", "json"):
        logs.install(fmt)
        ObjectLogger(body=BODY, settings=kopf.OperatorSettings()).error(
            "Handler 'h' failed temporarily: cannot reach redis://:s3cr3t-pw@redis:6379"
        )
        try:
            raise ConnectionError("AUTH s3cr3t-pw refused")
        except ConnectionError:
            logging.getLogger("bullflow.test").exception("connect failed")
    text = capture.getvalue()
    assert "s3cr3t-pw" not in text and "redis://***@redis:6379" in text
    assert text.count("WARNING") == 1 and '"level": "warning"' in text


def test_extras_are_scrubbed_too(capture):
    remember_url("redis://:extra-s3cret@redis:6379")
    for fmt in ("text", "json"):
        logs.install(fmt)
        logging.getLogger("bullflow.test").warning("m", extra={"url": "redis://:extra-s3cret@r"})
    assert "extra-s3cret" not in capture.getvalue() and "***" in capture.getvalue()


def test_install_twice_adds_one_filter(capture):
    logs.install("text")
    logs.install("json")
    objects = logging.getLogger("kopf.objects")
    assert sum(isinstance(f, logs.RetryAsWarning) for f in objects.filters) == 1
