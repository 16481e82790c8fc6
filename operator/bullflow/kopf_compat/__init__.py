"""bullflow's adjustments to kopf, kept apart from the handlers because they reach into kopf's
private API (`kopf._cogs`, `kopf._core`):

- `storage`: handler progress and diff-base kept in memory instead of in annotations;
- `namespaces`: namespaces that kopf's namespace watcher reports only in its listing are
  watched too.

pyproject.toml pins kopf to the minor version they were written against, and
tests/unit/test_kopf_compat_shape.py fails loudly when the private names they use change shape.
"""
