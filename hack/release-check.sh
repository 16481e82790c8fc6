#!/usr/bin/env bash
# make release-check: build what a release ships into dist/ and check it.
#   1. the versions agree and the generated docs are current (unit tests, chart README, API docs);
#   2. sdist + wheel of bullflow and bullflow-worker (python -m build), `twine check`;
#   3. both wheels installed into a fresh virtualenv (no source tree on the path): every module
#      of the source tree is in a wheel, the installed versions are bullflow.__version__, and
#      bullflow-operator, kubectl-bullflow and bullflow-worker answer --help;
#   4. helm lint --strict and helm package of the chart.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-.venv/bin/python}
DIST=${DIST:-dist}
started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }

step "versions and generated docs"
"$PY" -m pytest -q -p no:cacheprovider tests/unit/test_release_versions.py \
  tests/unit/test_chart_metadata.py tests/unit/test_chart_readme.py tests/unit/test_apidocs.py
VERSION=$("$PY" -c 'import bullflow; print(bullflow.__version__)')
echo "version $VERSION"

step "sdists and wheels into $DIST/"
rm -rf "$DIST"
mkdir -p "$DIST"
"$PY" -m build --outdir "$DIST" . >"$DIST/build-operator.log" 2>&1 ||
  { cat "$DIST/build-operator.log"; exit 1; }
"$PY" -m build --outdir "$DIST" worker-image >"$DIST/build-worker.log" 2>&1 ||
  { cat "$DIST/build-worker.log"; exit 1; }
rm -f "$DIST"/build-*.log
ls -l "$DIST"
"$PY" -m twine check "$DIST"/*.whl "$DIST"/*.tar.gz

step "the wheels in a clean virtualenv"
VENV=$(mktemp -d)
trap 'rm -rf "$VENV"' EXIT
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt \
  "$DIST/bullflow-$VERSION-py3-none-any.whl" "$DIST/bullflow_worker-$VERSION-py3-none-any.whl"
# Run from an empty directory so that nothing is imported from the source tree.
(cd "$VENV" && "$VENV/bin/python" - "$ROOT" "$VERSION" <<'EOF'
import importlib
import importlib.metadata
import sys
from pathlib import Path

root, version = Path(sys.argv[1]), sys.argv[2]
for dist in ("bullflow", "bullflow-worker"):
    assert importlib.metadata.version(dist) == version, (dist, importlib.metadata.version(dist))
missing = []
for base, package in ((root / "operator", "bullflow"), (root / "worker-image", "bullflow_worker")):
    for path in sorted((base / package).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        module = ".".join(path.relative_to(base).with_suffix("").parts).removesuffix(".__init__")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin or root in Path(spec.origin).parents:
            missing.append(module)
assert not missing, f"modules missing from the wheels: {missing}"
print("every module of the source tree is in the wheels, version", version)
EOF
)
for command in bullflow-operator kubectl-bullflow bullflow-worker; do
  (cd "$VENV" && "$VENV/bin/$command" --help >/dev/null) || { echo "$command --help failed"; exit 1; }
  echo "$command --help: ok"
done

step "chart"
HELM=$("$PY" -c 'from tests.harness.tools import expected_tools; print(expected_tools().helm)')
"$HELM" lint --strict charts/bullflow
for values in charts/bullflow/ci/*.yaml; do
  "$HELM" lint --strict --quiet charts/bullflow -f "$values"
done
"$HELM" package charts/bullflow --destination "$DIST"
test -f "$DIST/bullflow-$VERSION.tgz"

step "release check passed in $((SECONDS - started)) s"
ls -l "$DIST"
