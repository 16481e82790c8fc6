"""Shared pytest configuration. The fixtures live in tests/harness/fixtures.py:

session: harness_tools, local_cluster, redis_server, kube_client, kubectl
function: namespace, redis_url, redis_prefix

Redis Cluster and Sentinel (tests/harness/topology_fixtures.py): redis_cluster and
redis_sentinel (session), fresh_redis_cluster and fresh_redis_sentinel (function)
"""

from tests.harness.fixtures import (  # noqa: F401 - re-exported fixtures and hooks
    harness_tools,
    kube_client,
    kubectl,
    local_cluster,
    namespace,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    pytest_terminal_summary,
    redis_prefix,
    redis_server,
    redis_url,
)
from tests.harness.topology_fixtures import (  # noqa: F401 - re-exported fixtures
    fresh_redis_cluster,
    fresh_redis_sentinel,
    redis_cluster,
    redis_sentinel,
)
