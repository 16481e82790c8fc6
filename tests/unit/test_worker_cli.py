"""bullflow-worker: argument parsing, Redis URL validation and processor loading errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bullflow_worker.cli import parse_settings
from bullflow_worker.config import redact_url, resolve_redis_url, validate_redis_url
from bullflow_worker.errors import UsageError
from bullflow_worker.loader import adapt_processor, import_processor, load_processor

pytestmark = pytest.mark.unit

BIN = Path(sys.executable).with_name("bullflow-worker")
ECHO = "bullflow_worker.processors:echo"
NO_REDIS_ENV = ("BULLFLOW_REDIS_URL", "REDIS_URL", "BULLFLOW_REDIS_URL_FILE")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Any:
    base = {k: v for k, v in os.environ.items() if k not in NO_REDIS_ENV}
    return subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )


def assert_one_line_error(res: Any, code: int, fragment: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("bullflow-worker: error: "), lines[0]
    assert fragment in lines[0], lines[0]


# --- subprocess runs of the real console script -------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "the following arguments are required: --queue/-q, --processor/-p"),
        (("--queue", "q"), "required: --processor/-p"),
        (("--processor", ECHO), "required: --queue/-q"),
        (("--queue", "q", "--processor", ECHO, "--concurrency", "0"), "must be >= 1"),
        (("--queue", "q", "--processor", ECHO, "--concurrency", "many"), "invalid integer"),
        (("--queue", "q", "--processor", ECHO, "--http-port", "70000"), "port must be 0-65535"),
        (("--queue", "q", "--processor", ECHO, "--log-format", "xml"), "invalid choice"),
        (("--queue", "q", "--processor", ECHO, "--summary-interval", "-1"), "must be >= 0"),
        (("--queue", "", "--processor", ECHO), "invalid name"),
        (("--queue", "a:b", "--processor", ECHO), "invalid name"),
        (("--queue", "q", "--processor", ECHO, "--bogus"), "unrecognized arguments: --bogus"),
        (("--queue", "q", "--processor", ECHO), "no Redis URL"),
    ],
)
def test_usage_errors(args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(run_cli(*args), 2, fragment)


@pytest.mark.parametrize(
    ("processor", "fragment"),
    [
        ("bullflow_worker.processors", "expected 'module:function'"),
        ("bullflow_worker.processors:", "expected 'module:function'"),
        ("a b:c", "expected 'module:function'"),
        ("no_such_module_xyz:run", "module 'no_such_module_xyz' not found"),
        ("bullflow_worker.processors:nope", "has no attribute 'nope'"),
        ("bullflow_worker.processors:EXEC_LOG_ENV", "is not callable (it is a str)"),
        ("os.path:sep", "is not callable"),
    ],
)
def test_processor_errors(processor: str, fragment: str) -> None:
    res = run_cli("--queue", "q", "--processor", processor, "--redis-url", "redis://127.0.0.1:1")
    assert_one_line_error(res, 2, fragment)


def test_processor_module_raising_on_import(tmp_path: Path) -> None:
    (tmp_path / "broken_proc.py").write_text("raise RuntimeError('config missing')\n")
    (tmp_path / "needs_dep.py").write_text("import not_installed_dep_xyz\n")
    env = {"PYTHONPATH": str(tmp_path)}
    res = run_cli(
        "--queue",
        "q",
        "--processor",
        "broken_proc:f",
        "--redis-url",
        "redis://127.0.0.1:1",
        env=env,
    )
    assert_one_line_error(res, 2, "importing 'broken_proc' failed: RuntimeError: config missing")
    res = run_cli(
        "--queue", "q", "--processor", "needs_dep:f", "--redis-url", "redis://127.0.0.1:1", env=env
    )
    assert_one_line_error(res, 2, "No module named 'not_installed_dep_xyz'")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://localhost:6379", "has a scheme other than redis://, rediss://, unix://, redis+"),
        ("localhost:6379", "is not a URL (no scheme://)"),
        ("redis://", "has no host"),
        ("redis://host:notaport", "invalid Redis URL"),
        ("redis://host:99999", "invalid Redis URL"),
        ("redis://host:6379/abc", "database (the path) that is not a number"),
        ("redis+sentinel://host:26379", "add the master name as the path"),
        ("unix://", "needs a socket path"),
    ],
)
def test_bad_redis_urls(url: str, fragment: str) -> None:
    res = run_cli("--queue", "q", "--processor", ECHO, "--redis-url", url)
    assert_one_line_error(res, 2, fragment)


def test_bad_url_from_env_and_password_redacted() -> None:
    res = run_cli(
        "--queue", "q", "--processor", ECHO, env={"REDIS_URL": "https://user:hunter2@host/0"}
    )
    assert_one_line_error(res, 2, "'https://user:***@host/0'")
    assert "hunter2" not in res.stderr


def test_missing_url_file() -> None:
    res = run_cli(
        "--queue",
        "q",
        "--processor",
        ECHO,
        env={"BULLFLOW_REDIS_URL_FILE": "/nonexistent/redis-url"},
    )
    assert_one_line_error(
        res, 2, "cannot read BULLFLOW_REDIS_URL_FILE file '/nonexistent/redis-url'"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_redis_gives_up_after_bounded_retry() -> None:
    port = _closed_port()
    res = run_cli(
        "--queue",
        "q",
        "--processor",
        ECHO,
        "--http-port",
        "0",
        "--redis-url",
        f"redis://:s3cret@127.0.0.1:{port}/0",
        "--connect-timeout",
        "1",
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"bullflow-worker: error: cannot connect to Redis at redis://:***@127.0.0.1:{port}/0 after "
    )
    assert "s3cret" not in res.stderr


def test_help_and_version() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    assert "--processor MODULE:FUNCTION" in res.stdout
    assert "BULLFLOW_REDIS_URL_FILE" in res.stdout
    res = run_cli("--version")
    assert res.returncode == 0
    assert res.stdout.startswith("bullflow ")  # the project, as the operator says it


# --- in-process: config & loader --------------------------------------------------------


def test_parse_settings_defaults_and_repeatable_queue() -> None:
    args, s = parse_settings(
        ["-q", "a", "--queue", "b", "-q", "a", "-p", ECHO, "--redis-url", "redis://r:6379"]
    )
    assert s.queues == ["a", "b"]
    assert (s.concurrency, s.prefix, s.http_port, s.drain_timeout) == (1, "bull", 8080, 0.0)
    assert s.summary_interval == 30.0
    assert args.log_format == "text"


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost",
        "redis://localhost:6379/0",
        "rediss://:pw@redis.example.com:6380/2",
        "rediss://user:pw@10.0.0.1:6380?ssl_cert_reqs=none",
        "redis://[::1]:6379/0",
        "unix:///var/run/redis.sock?db=1",
        "  redis://trimmed:6379 \n",
    ],
)
def test_valid_urls(url: str) -> None:
    assert validate_redis_url(url) == url.strip()


def test_resolve_precedence(tmp_path: Path) -> None:
    f = tmp_path / "url"
    f.write_text("rediss://:pw@from-file:6380/0\n")
    env = {
        "BULLFLOW_REDIS_URL_FILE": str(f),
        "BULLFLOW_REDIS_URL": "redis://a",
        "REDIS_URL": "redis://b",
    }
    assert resolve_redis_url("redis://cli", env) == "redis://cli"
    assert resolve_redis_url(None, env) == "rediss://:pw@from-file:6380/0"
    env.pop("BULLFLOW_REDIS_URL_FILE")
    assert resolve_redis_url(None, env) == "redis://a"
    env.pop("BULLFLOW_REDIS_URL")
    assert resolve_redis_url(None, env) == "redis://b"
    with pytest.raises(UsageError, match="no Redis URL"):
        resolve_redis_url(None, {})
    f.write_text("  \n")
    with pytest.raises(UsageError, match="is empty"):
        resolve_redis_url(None, {"BULLFLOW_REDIS_URL_FILE": str(f)})


def test_redact() -> None:
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("redis://u:pw@h") == "redis://u:***@h"
    assert redact_url("redis://h:1") == "redis://h:1"


def test_import_processor_ok() -> None:
    from bullflow_worker import processors

    assert import_processor(ECHO) is processors.echo


class _Job:
    id = "7"
    data = {"x": 1}


async def test_adapt_sync_async_and_token() -> None:
    seen: list[Any] = []

    def sync_one(job: Any) -> Any:
        return job.data["x"] + 1

    def sync_two(job: Any, token: str) -> Any:
        seen.append(token)
        return "two"

    async def async_one(job: Any) -> Any:
        return job.id

    def with_default(job: Any, token: str = "", extra: int = 3) -> int:
        return extra

    assert await adapt_processor(sync_one)(_Job(), "tok") == 2
    assert await adapt_processor(sync_two)(_Job(), "tok") == "two"
    assert seen == ["tok"]
    assert await adapt_processor(async_one)(_Job(), "tok") == "7"
    assert await adapt_processor(with_default)(_Job(), "tok") == 3
    assert await load_processor(ECHO)(_Job(), "tok") == {"x": 1}


def test_adapt_rejects_bad_signatures() -> None:
    def none() -> None: ...

    def three(a: Any, b: Any, c: Any) -> None: ...

    def kwonly(job: Any, *, required: int) -> None: ...

    with pytest.raises(UsageError, match="takes no arguments"):
        adapt_processor(none, "m:none")
    with pytest.raises(UsageError, match="requires 3 positional arguments"):
        adapt_processor(three, "m:three")
    with pytest.raises(UsageError, match="unsupported signature"):
        adapt_processor(kwonly, "m:kwonly")
