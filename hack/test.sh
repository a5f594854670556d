#!/usr/bin/env bash
# The whole test suite, each test on the tier where it can fail (tests/tiers.py; the README's Tests
# section maps every file):
#   1. static checks, then the unit tier, once, with no cluster: a failure stops here;
#   2. the local cluster (pods as local processes + KWOK nodes): the storage, cluster and local
#      tiers, and the browser tier (Debian's Chromium, hack/chromium.sh), a parallel part under
#      pytest-xdist, then the serial part alone;
#   3. kind (hack/e2e-kind.sh, its node image built offline): the runtime tier, what needs real
#      containers (our images, the kubelet, probes, Helm's Deployment, CoreDNS).
# Each cluster is started if not running, and stopped again if this script started it.
# PARAFLOW_TIERS="unit local kind" picks some of them (e.g. PARAFLOW_TIERS=local).
# With PARAFLOW_TEST_EXTERNAL=1 it runs every tier but `local` against KUBECONFIG and the
# PARAFLOW_TEST_S3_* endpoints you exported (a kind cluster, or your own).
# PARAFLOW_TEST_WORKERS sets the parallel part's pytest-xdist workers (0: none).
# PARAFLOW_HYPOTHESIS_SEED=N replays a run's property-test draws (the seed is logged at the start).
#   hack/test.sh [pytest args...]      e.g. -k redrive, -x
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"
started=$SECONDS

"$HACK_DIR/python.sh"
# shellcheck disable=SC1091
source "${PARAFLOW_VENV:-$REPO_DIR/.venv}/bin/activate"

WORKERS=${PARAFLOW_TEST_WORKERS:-2}
SEED=${PARAFLOW_HYPOTHESIS_SEED:-$((RANDOM * 32768 + RANDOM))}
export PARAFLOW_HYPOTHESIS_SEED=$SEED
log "hypothesis seed $SEED (replay this run's draws: PARAFLOW_HYPOTHESIS_SEED=$SEED make test)"
COMMON=(--durations=25 "--hypothesis-seed=$SEED")

# One selection of tests: those that may share the cluster in parallel, then the serial ones alone,
# whatever the first part gave (one run shows every failure). pytest's exit 5 (nothing selected,
# e.g. -k matched none of this part) is no failure.
run_part() { # marker-expression pytest-args...
  local expr=$1; shift
  local parallel=(); [ "$WORKERS" -gt 0 ] && parallel=(-n "$WORKERS")
  local rc=0 failed=0
  python -m pytest "${COMMON[@]}" "${parallel[@]}" -m "($expr) and not serial" "$@" || rc=$?
  [ $rc = 0 ] || [ $rc = 5 ] || failed=1
  rc=0
  python -m pytest "${COMMON[@]}" -m "($expr) and serial" "$@" || rc=$?
  [ $rc = 0 ] || [ $rc = 5 ] || failed=1
  return $failed
}

# Checked once per run: the kind tier runs this script again for its pytest only.
if [ "${PARAFLOW_TEST_PREPARED:-0}" != 1 ]; then
  log "static checks: ruff, mypy (strict), import-linter, deptry, CRD and manifest drift"
  ruff format --check --quiet .
  ruff check --quiet .
  mypy
  lint-imports --no-cache >/dev/null
  deptry operator worker >/dev/null 2>&1 || deptry operator worker  # quiet unless it has something to say
  python -m paraflow.crdgen --check
  "$HACK_DIR/render-deploy.sh" --check
fi

tiers=${PARAFLOW_TIERS:-unit local kind}
[ "${PARAFLOW_TEST_EXTERNAL:-0}" = 1 ] && tiers=${PARAFLOW_TIERS:-unit external}
[ "${PARAFLOW_TEST_PREPARED:-0}" = 1 ] && tiers=external

if [[ " $tiers " == *" unit "* ]]; then
  log "unit tier (no cluster)"
  python -m pytest "${COMMON[@]}" -m unit "$@" || die "unit tests failed: no cluster tier runs (after $((SECONDS - started))s)"
fi

# Our images, built with no registry (a Docker engine is started if none answers).
if [ "${PARAFLOW_TEST_PREPARED:-0}" != 1 ] && [[ " $tiers " == *" kind "* || " $tiers " == *" external "* ]]; then
  "$HACK_DIR/images.sh"
fi

# The local cluster's tiers, in a subshell so its environment stays its own.
local_tiers() (
  local cluster=("$HACK_DIR/cluster.sh")
  if ! "${cluster[@]}" status >/dev/null 2>&1; then
    "${cluster[@]}" down >/dev/null 2>&1 || true
    "${cluster[@]}" up
    [ "${PARAFLOW_KEEP_CLUSTER:-0}" = 1 ] || trap '"$HACK_DIR/cluster.sh" down' EXIT
  fi
  eval "$("${cluster[@]}" env)"
  # The suite runs its own operator; a second one (`make demo` leaves its own running) would act
  # on the test workflows too. It is stopped for the run and started again after.
  if "${cluster[@]}" status 2>/dev/null | grep -q "^operator: running"; then
    log "stopping the demo's operator while the suite runs its own"
    "${cluster[@]}" operator-stop
    trap '"$HACK_DIR/cluster.sh" operator >/dev/null' EXIT
  fi
  log "storage, cluster, local and browser tiers on the local cluster"
  run_part "storage or cluster or local or browser" "$@"
)

failed=()
for tier in $tiers; do
  case $tier in
    unit) ;;
    local)
      "$HACK_DIR/build.sh" all prometheus
      "$HACK_DIR/chromium.sh" >/dev/null
      local_tiers "$@" || failed+=(local) ;;
    kind)
      [ "$(id -u)" = 0 ] || die "the kind tier builds its node image as root (PARAFLOW_TIERS=\"unit local\" leaves it out)"
      log "runtime tier on a kind cluster"
      PARAFLOW_TEST_PREPARED=1 PARAFLOW_TEST_MARKERS=runtime "$HACK_DIR/e2e-kind.sh" "$@" || failed+=(kind) ;;
    external)
      log "pytest on KUBECONFIG=$KUBECONFIG"
      run_part "${PARAFLOW_TEST_MARKERS:-storage or cluster or runtime}" "$@" || failed+=(external) ;;
    *) die "unknown tier '$tier' in PARAFLOW_TIERS (unit, local, kind, external)" ;;
  esac
done
[ ${#failed[@]} -eq 0 ] || die "tests failed on: ${failed[*]} (after $((SECONDS - started))s)"
log "all tests passed in $((SECONDS - started))s"
