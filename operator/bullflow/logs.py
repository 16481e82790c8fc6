"""The operator's log lines: time, level and the object a line is about, as text or JSON.

Text: `2026-01-02T03:04:05.678Z WARNING [ns/name] message key=value`.
JSON: `{"time", "level", "logger", "namespace", "name", "message", ...extras, "exc"}`, the keys
of the worker runtime's JSON logs (bullflow_worker/logs.py) plus the object.

Which object: kopf's object loggers put it in the record as `k8s_ref` (a dict with namespace
and name); bullflow's own loggers pass the same with `extra=about(namespace, name)`.

kopf logs a handler that will be retried ("failed temporarily", "will try again in") at ERROR,
as it does a handler that gave up: `RetryAsWarning` lowers the first to WARNING, so that ERROR
means something stopped. Redaction: redaction.py scrubs every record's message and traceback
when it is created; the extras, which these formats print and kopf's did not, are scrubbed here
with the whole line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from .redaction import scrub

# Record attributes that are not extras: the standard ones, and what kopf's object loggers add
# for their own use (the operator's settings object, whether to post the line as an Event).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_NOT_EXTRAS = _STANDARD | {"k8s_ref", "k8s_skip", "settings"}


def about(namespace: str | None, name: str) -> dict[str, Any]:
    """`extra=` for a log call about one object: the same field kopf's object loggers set."""
    return {"k8s_ref": {"namespace": namespace, "name": name}}


def log_time(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-01-02T03:04:05.678Z."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def object_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """(namespace, name) of the object the record is about, or (None, None)."""
    ref = getattr(record, "k8s_ref", None)
    if not isinstance(ref, dict) or not ref.get("name"):
        return None, None
    return ref.get("namespace") or None, str(ref["name"])


def extras_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _NOT_EXTRAS}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        namespace, name = object_of(record)
        parts = [log_time(record), f"{record.levelname:<7}"]
        if name:
            parts.append(f"[{namespace}/{name}]" if namespace else f"[{name}]")
        parts.append(record.getMessage())
        parts.extend(f"{k}={v}" for k, v in extras_of(record).items())
        line = " ".join(parts)
        trace = self._trace(record)
        return scrub(f"{line}\n{trace}" if trace else line)

    def _trace(self, record: logging.LogRecord) -> str:
        text = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}" if text else record.stack_info
        return text


class JsonFormatter(TextFormatter):
    def format(self, record: logging.LogRecord) -> str:
        namespace, name = object_of(record)
        doc: dict[str, Any] = {
            "time": log_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if name:
            doc["namespace"], doc["name"] = namespace, name
        doc["message"] = record.getMessage()
        doc.update(extras_of(record))
        trace = self._trace(record)
        if trace:
            doc["exc"] = trace
        return scrub(json.dumps(doc, default=str))


def is_retry(message: str) -> bool:
    """Whether a kopf handler-outcome line announces a retry (not a handler that gave up).

    kopf's wording (kopf/_core/actions/execution.py): "<handler> failed temporarily: ..." for a
    TemporaryError, "... failed with an exception and will try again in N seconds: ..." for any
    other error; when the next try would exceed the handler's timeout or retries it says
    "failed temporarily but will ..." or "and will stop now" instead, and that stays an error.
    """
    return " failed temporarily: " in message or " and will try again in " in message


class RetryAsWarning(logging.Filter):
    """Lower kopf's retry lines from ERROR to WARNING (on the `kopf.objects` logger, so that
    the Event kopf posts from the line is a warning too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and is_retry(record.getMessage()):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install(log_format: str) -> None:
    """Format every handler of the root logger (kopf.configure has put its own there)."""
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, RetryAsWarning) for f in objects.filters):
        objects.addFilter(RetryAsWarning())
