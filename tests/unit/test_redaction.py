"""No credential in what the operator says: the scrubbing helper, the log records, the managed
Secret's decisions and the owned Deployment's env."""

from __future__ import annotations

import io
import logging
import secrets

import pytest

from bullflow import redaction
from bullflow.models.workerpool import WorkerPoolSpec
from bullflow.redaction import (
    describe_error,
    redacted_url,
    remember_secrets,
    remember_url,
    scrub,
)
from bullflow.services.connection_secret import (
    SecretAction,
    SecretState,
    build_default_connection_secret,
    secret_action,
)
from bullflow.services.worker_deployment import ManagedSecret, build_deployment

pytestmark = pytest.mark.unit


def fresh_password() -> str:
    return f"pw-{secrets.token_hex(12)}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:hunter2@db:6379/0", "redis://***@db:6379/0"),
        ("rediss://app:hunter2@db/1 failed", "rediss://***@db/1 failed"),
        ("redis://:p@ss@db:6379/0", "redis://***@db:6379/0"),  # an unencoded @ in it
        ("a redis://x:y@h and redis://u:v@k", "a redis://***@h and redis://***@k"),
        ("redis://db:6379/0 has no credentials", "redis://db:6379/0 has no credentials"),
        ("http://host/path@v1 keeps its path", "http://host/path@v1 keeps its path"),
        ("mail user@example.org", "mail user@example.org"),
    ],
)
def test_scrub_removes_url_credentials(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_scrub_masks_remembered_passwords_outside_urls() -> None:
    password = fresh_password()
    assert scrub(f"AUTH {password} refused") == f"AUTH {password} refused"  # not yet known
    remember_url(f"redis://default:{password}@db:6379/0")
    assert scrub(f"AUTH {password} refused") == "AUTH *** refused"
    # The username beside a password is not a secret (masking "default" would garble text).
    assert scrub("the default Redis") == "the default Redis"


def test_percent_encoded_passwords_are_masked_both_ways() -> None:
    remember_url("redis://:s3cr%40t-pass@db:6379/0")
    assert scrub("x s3cr@t-pass y s3cr%40t-pass z") == "x *** y *** z"


def test_sentinel_passwords_are_remembered_and_scrubbed() -> None:
    password, sentinel_password = fresh_password(), fresh_password()
    url = f"redis+sentinel://:{password}@s1,s2/mymaster?sentinelPassword={sentinel_password}"
    # In a URL, even before it is remembered: the user-info and the query value.
    assert scrub(f"connect {url} failed") == (
        "connect redis+sentinel://***@s1,s2/mymaster?sentinelPassword=*** failed"
    )
    remember_url(url)
    assert scrub(f"AUTH {sentinel_password} and AUTH {password}") == "AUTH *** and AUTH ***"


def test_short_secrets_are_masked_only_inside_urls() -> None:
    remember_secrets({"ab"})
    assert scrub("tab redis://:ab@h") == "tab redis://***@h"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@db:6379/0", "redis://db:6379"),
        ("rediss://u:pw@db/3?ssl_cert_reqs=none", "rediss://db:6379"),
        ("redis://:pw@db:notaport/0", "redis://***"),
        ("redis://:pw@[::1/0", "redis://***"),
        (
            "redis+sentinel://:pw@s1,[::1]:26380/mymaster/2?sentinelPassword=spw",
            "redis+sentinel://s1:26379,[::1]:26380/mymaster",
        ),
        ("rediss+cluster://:pw@n1:7000,n2", "rediss+cluster://n1:7000,n2:6379"),
    ],
)
def test_redacted_url(url: str, expected: str) -> None:
    assert redacted_url(url) == expected


def test_describe_error_scrubs() -> None:
    password = fresh_password()
    remember_url(f"redis://:{password}@db:6379/0")
    err = RuntimeError(f"cannot reach redis://:{password}@db:6379/0 ({password})")
    assert describe_error(err) == "RuntimeError: cannot reach redis://***@db:6379/0 (***)"


def test_every_log_record_is_scrubbed_messages_args_and_tracebacks() -> None:
    password = fresh_password()
    remember_url(f"redis://:{password}@db:6379/0")
    redaction.install_log_redaction()
    redaction.install_log_redaction()  # idempotent: one factory, not two
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test_redaction.records")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.warning("connecting to %s", f"redis://:{password}@db:6379/0")
        try:
            raise ConnectionError(f"AUTH {password} failed")
        except ConnectionError:
            logger.exception("it failed")
        adapter = logging.LoggerAdapter(logger, {"k8s_ref": {"name": "x"}})
        adapter.error("through an adapter: %s", password)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert password not in text
    assert "connecting to redis://***@db:6379/0" in text
    assert "ConnectionError: AUTH *** failed" in text  # the traceback is kept, scrubbed
    assert "through an adapter: ***" in text


OWNER = "bullflow.io/v1alpha1"
LABELS = {"bullflow.io/workerpool": "pool"}


def wanted_secret(url: str) -> dict[str, object]:
    return build_default_connection_secret("ns", "pool", "uid-1", url, LABELS, OWNER)


def state_of(body: dict, owners: frozenset[str] = frozenset({"uid-1"})) -> SecretState:  # type: ignore[type-arg]
    return SecretState(
        data=dict(body["data"]),
        labels=dict(body["metadata"]["labels"]),
        owner_uids=owners,
        resource_version="7",
    )


def test_managed_secret_is_owned_labelled_and_holds_the_url() -> None:
    body = wanted_secret("redis://:pw@db:6379/0")
    meta = body["metadata"]
    assert isinstance(meta, dict)
    assert meta["name"] == "pool-workers-redis"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "bullflow"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert meta["ownerReferences"][0]["controller"] is True
    assert body["data"] == {"url": "cmVkaXM6Ly86cHdAZGI6NjM3OS8w"}


def test_managed_secret_is_written_only_when_it_differs() -> None:
    wanted = wanted_secret("redis://:pw@db:6379/0")
    assert secret_action(None, wanted, "uid-1") is SecretAction.CREATE
    assert secret_action(state_of(wanted), wanted, "uid-1") is SecretAction.KEEP
    old = state_of(wanted_secret("redis://:old@db:6379/0"))
    assert secret_action(old, wanted, "uid-1") is SecretAction.UPDATE
    unlabelled = SecretState(dict(wanted["data"]), {}, frozenset({"uid-1"}), "7")  # type: ignore[call-overload]
    assert secret_action(unlabelled, wanted, "uid-1") is SecretAction.UPDATE


def test_someone_elses_secret_of_that_name_is_never_touched() -> None:
    wanted = wanted_secret("redis://:pw@db:6379/0")
    theirs = state_of(wanted, owners=frozenset())
    assert secret_action(theirs, wanted, "uid-1") is SecretAction.CONFLICT
    other_pool = state_of(wanted, owners=frozenset({"uid-2"}))
    assert secret_action(other_pool, wanted, "uid-1") is SecretAction.CONFLICT


def url_env(deployment: dict) -> dict:  # type: ignore[type-arg]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return next(e for e in container["env"] if e["name"] == "BULLFLOW_REDIS_URL")


def spec(**extra: object) -> WorkerPoolSpec:
    return WorkerPoolSpec.model_validate({"queues": ["q"], "worker": {"processor": "m:f"}, **extra})


def test_deployment_takes_the_default_url_from_the_managed_secret() -> None:
    deployment = build_deployment("ns", "pool", "uid-1", spec(), 1, ManagedSecret("s", "42"))
    assert url_env(deployment) == {
        "name": "BULLFLOW_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "url"}},
    }
    # A new default URL (a new Secret version) restarts the workers, which read env at start.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"bullflow.io/connection-secret-version": "42"}


def test_deployment_uses_the_pools_own_secret_when_named() -> None:
    pool = spec(
        connection={"name": "mine", "key": "u"},
        worker={"processor": "m:f", "podAnnotations": {"a": "b"}},
    )
    deployment = build_deployment("ns", "pool", "uid-1", pool, 1, None)
    assert url_env(deployment)["valueFrom"] == {"secretKeyRef": {"name": "mine", "key": "u"}}
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}


def test_deployment_without_any_redis_has_an_empty_url() -> None:
    deployment = build_deployment("ns", "pool", "uid-1", spec(), 0, None)
    assert url_env(deployment) == {"name": "BULLFLOW_REDIS_URL", "value": ""}
