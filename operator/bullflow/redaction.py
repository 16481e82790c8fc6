"""Keeping Redis credentials out of everything the operator says: logs, Events, conditions,
metric labels.

One helper, `scrub(text)`, for any text that may carry a URL or a Redis error: it removes the
user-info part of every URL in the text (`redis://user:pw@host` -> `redis://***@host`), the
value of a secret-looking query option (`?sentinelPassword=***`), and every credential this
process has been handed (`remember_url`), wherever it appears, also outside a URL (an error
message that echoes an AUTH argument, say). `redacted_url(url)` is the short form for a
message that names a Redis: scheme, hosts and ports (and a Sentinel master name) only.

`install_log_redaction()` makes every log record of the process pass through `scrub`, whoever
logs it (bullflow, kopf, redis-py, bullmq): kopf posts its log lines of an object as Events, so
this also covers the Events of handler failures that bullflow does not write itself.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from bullflow_worker.redis_address import (
    SECRET_QUERY_VALUE,
    RedisAddressError,
    parse_redis_address,
    url_secrets,
)

MASK = "***"
# A credential shorter than this is scrubbed only inside a URL: replacing a 2-character password
# everywhere would mangle every number and word of a log line that happens to contain it.
MIN_BARE_SECRET_LENGTH = 4
# `scheme://userinfo@`: the user-info runs to the last "@" before the path, query or fragment
# (an unencoded "@" in a password is common, and urlparse splits the same way).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, so that a longer secret is masked whole


def redacted_url(url: str) -> str:
    """The URL without credentials, database or query: scheme and hosts (a Sentinel URL also its
    master name), safe in conditions, Events and logs."""
    try:
        address = parse_redis_address(url)
    except RedisAddressError:
        return f"{url.partition('://')[0]}://{MASK}"  # say nothing of what does not parse
    scheme = url.strip().partition("://")[0]
    if address.socket_path:
        return f"{scheme}://{address.socket_path}"
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in address.nodes)
    master = f"/{address.master_name}" if address.master_name else ""
    return f"{scheme}://{hosts}{master}"


def remember_url(url: str) -> None:
    """Note the credentials of a URL this process uses, so that `scrub` masks them anywhere.

    The password (as written and percent-decoded), a Sentinel's sentinelPassword likewise; a
    user-info without a password is a token as a whole. A username beside a password is not a
    secret, and masking a common one ("default") everywhere would garble unrelated text."""
    remember_secrets(url_secrets(url))


def remember_secrets(values: set[str] | list[str] | tuple[str, ...]) -> None:
    """Mask these strings wherever `scrub` finds them (those long enough, see above)."""
    global _secrets
    fresh = {v for v in values if len(v) >= MIN_BARE_SECRET_LENGTH} - set(_secrets)
    if not fresh:
        return
    with _lock:
        _secrets = tuple(sorted({*_secrets, *fresh}, key=len, reverse=True))


def scrub(text: str) -> str:
    """`text` without any URL credentials or remembered secret."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
        text = SECRET_QUERY_VALUE.sub(lambda m: m.group("key") + MASK, text)
    return text


def describe_error(err: BaseException) -> str:
    """`Type: message` of an exception, scrubbed: for a condition, an Event or a log line."""
    return scrub(f"{type(err).__name__}: {err}")


def _scrub_record(record: logging.LogRecord) -> None:
    """Render the record's message and traceback now, scrubbed, in place of the originals."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it later
        return
    record.msg, record.args = scrub(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
        # Formatters re-render exc_info when it is set; exc_text is what they print otherwise.
        record.exc_info = None
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


_installed = False


def install_log_redaction() -> None:
    """Scrub every log record of the process when it is created (idempotent).

    A record factory rather than a handler filter: kopf replaces the root handlers when it
    configures logging and posts Events through a handler of its own; the factory sees every
    record before any of them."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        _scrub_record(record)
        return record

    logging.setLogRecordFactory(redacting_factory)
