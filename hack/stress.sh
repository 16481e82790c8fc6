#!/usr/bin/env bash
# `make test-stress`: the whole suite STRESS_RUNS times (default 3) while stress-ng keeps every
# core busy, to catch tests that lean on timing. Installs stress-ng (Debian) when missing; stops
# it whatever happens; exits non-zero if any run failed. Prints each run's pytest summary line
# and its failures at the end; each run's full output is kept in $STRESS_LOG_DIR.
#
#   STRESS_RUNS=N      runs (default 3)
#   STRESS_TESTS=...   what pytest runs (default: tests, the whole suite)
#   STRESS_CPUS=N      stress-ng CPU workers at 100% load (default: one per core, nproc)
#   STRESS_LOG_DIR=D   where run-N.log go (default: a new /tmp/bullflow-stress.* folder)
#   PY=...             the Python with pytest (default .venv/bin/python)
#   PYTEST_ARGS=...    passed on to pytest
set -uo pipefail
cd "$(dirname "$0")/.."

RUNS=${STRESS_RUNS:-3}
CPUS=${STRESS_CPUS:-$(nproc)}
PY=${PY:-.venv/bin/python}
PYTEST_ARGS=${PYTEST_ARGS:-}
TESTS=${STRESS_TESTS:-tests}
LOG_DIR=${STRESS_LOG_DIR:-$(mktemp -d /tmp/bullflow-stress.XXXXXX)}
mkdir -p "$LOG_DIR"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "[stress] STRESS_RUNS must be a positive integer" >&2; exit 2; }

if ! command -v stress-ng >/dev/null; then
  echo "[stress] installing stress-ng"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends stress-ng >/dev/null
fi

# Its own process group (setsid), so that the stressors it forks go with it. The timeout only
# bounds a stress-ng that outlived this script somehow; the trap is what stops it.
setsid stress-ng --cpu "$CPUS" --cpu-load 100 --timeout "$((RUNS * 2))h" --quiet \
  >"$LOG_DIR/stress-ng.log" 2>&1 &
STRESS_PID=$!
stop_stress() {
  kill -TERM -- "-$STRESS_PID" 2>/dev/null || kill -TERM "$STRESS_PID" 2>/dev/null
  wait "$STRESS_PID" 2>/dev/null
}
trap stop_stress EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
kill -0 "$STRESS_PID" 2>/dev/null || { echo "[stress] stress-ng did not start" >&2; exit 1; }

failed=0
declare -a results
for ((i = 1; i <= RUNS; i++)); do
  log="$LOG_DIR/run-$i.log"
  echo "[stress] run $i/$RUNS: pytest $TESTS $PYTEST_ARGS, stress-ng --cpu $CPUS --cpu-load 100; output in $log"
  # shellcheck disable=SC2086  # STRESS_TESTS and PYTEST_ARGS are lists of words
  "$PY" -m pytest $TESTS $PYTEST_ARGS 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  summary=$(grep -E '(passed|failed|errors?|skipped|deselected|no tests ran).* in [0-9.]+s' "$log" | tail -n 1)
  if ! kill -0 "$STRESS_PID" 2>/dev/null; then
    summary="$summary (stress-ng was gone by the end: this run was not under load)"
    ((rc == 0)) && rc=1
  fi
  results[i]="run $i: exit $rc ${summary:-(no pytest summary line)}"
  if ((rc != 0)); then
    failed=$((failed + 1))
    failures=$(grep -E '^(FAILED|ERROR) ' "$log")
    [[ -n $failures ]] && results[i]+=$'\n'"$failures"
  fi
done

echo
echo "[stress] $RUNS run(s) with stress-ng --cpu $CPUS --cpu-load 100 (logs in $LOG_DIR):"
for ((i = 1; i <= RUNS; i++)); do
  echo "${results[i]}"
done
if ((failed > 0)); then
  echo "[stress] $failed of $RUNS run(s) failed"
  exit 1
fi
echo "[stress] all $RUNS run(s) passed"
