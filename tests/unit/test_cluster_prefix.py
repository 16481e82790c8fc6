"""The Redis Cluster prefix rule (bullflow_worker.cluster_prefix) and the worker CLI refusing a
prefix without a hash tag on a redis+cluster:// URL (exit 2, one line)."""

from __future__ import annotations

import pytest

from bullflow_worker.cli import main, parse_settings
from bullflow_worker.cluster_prefix import (
    cluster_prefix_problem,
    prefix_hash_tag,
    suggested_prefix,
)
from bullflow_worker.errors import UsageError

pytestmark = pytest.mark.unit

CLUSTER_URL = "redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001"


@pytest.mark.parametrize(
    ("prefix", "tag"),
    [
        ("{bull}", "bull"),
        ("{bull}:team-a", "bull"),
        ("app{x}", "x"),
        ("{a}{b}", "a"),  # Redis hashes the first tag only
        ("{{x}", "{x"),  # the first `{`, then the first `}` after it
        ("bull", None),
        ("{}", None),  # an empty tag: Redis hashes the whole key
        ("{}{bull}", None),
        ("{bull", None),  # the tag would close inside the queue name
        ("bull}", None),
        ("}{", None),
    ],
)
def test_hash_tag_is_the_one_redis_cluster_hashes(prefix: str, tag: str | None) -> None:
    assert prefix_hash_tag(prefix) == tag


def test_problem_shows_the_fix_for_the_setting() -> None:
    assert cluster_prefix_problem("{bull}") is None
    message = cluster_prefix_problem("bull")
    assert message is not None
    assert 'spec.prefix: "{bull}"' in message
    assert "hash tag" in message
    flag = cluster_prefix_problem("jobs", "--prefix")
    assert flag is not None and '--prefix: "{jobs}"' in flag


@pytest.mark.parametrize(
    ("prefix", "fix"), [("bull", "{bull}"), ("{}", "{bull}"), ("my{app", "{myapp}")]
)
def test_suggested_prefix_has_a_tag(prefix: str, fix: str) -> None:
    assert suggested_prefix(prefix) == fix
    assert prefix_hash_tag(suggested_prefix(prefix)) is not None


def test_cli_refuses_an_untagged_prefix_on_a_cluster_url() -> None:
    args = ["-q", "work", "-p", "bullflow_worker.processors:echo", "--redis-url", CLUSTER_URL]
    with pytest.raises(UsageError) as err:
        parse_settings([*args, "--prefix", "bull"])
    assert err.value.exit_code == 2
    assert "s3cret" not in str(err.value)
    _, settings = parse_settings([*args, "--prefix", "{bull}"])
    assert settings.prefix == "{bull}"
    # The default prefix (bull) has no tag either.
    with pytest.raises(UsageError):
        parse_settings(args)


def test_cli_keeps_any_prefix_off_cluster() -> None:
    for url in ("redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/mymaster"):
        _, settings = parse_settings(
            ["-q", "w", "-p", "bullflow_worker.processors:echo", "--redis-url", url]
        )
        assert settings.prefix == "bull"


def test_cli_exit_code_and_single_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-q", "w", "-p", "bullflow_worker.processors:echo", "--redis-url", CLUSTER_URL])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bullflow-worker: error: prefix 'bull'")
    assert '--prefix: "{bull}"' in err
