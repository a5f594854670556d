#!/usr/bin/env bash
# The whole test suite: static checks, then unit, integration and e2e tests against real clusters.
#
# Without PARAFLOW_TEST_EXTERNAL=1 it runs three clusters in turn (each started here, and
# stopped again if this script started it):
#   1. pods as local processes + KWOK nodes: every tier, including tests/local (scale on KWOK,
#      restarts of control-plane processes, the pod runner itself);
#   2. a real kubelet + containerd node (root): tests/integration and tests/e2e again, with our
#      images in real pods, the Helm-installed operator in a real Deployment;
#   3. kind (hack/e2e-kind.sh, its node image built offline): tests/integration and tests/e2e on
#      the cluster users test with, CoreDNS included.
# PARAFLOW_CLUSTER_NODE=podrunner|kubelet|kind runs only that cluster's tier. PARAFLOW_REAL_NODE=0
# runs only the first, on a machine without root (and says so: CI never sets it).
# With PARAFLOW_TEST_EXTERNAL=1 it uses KUBECONFIG and the PARAFLOW_TEST_S3_* endpoint you
# exported (a kind cluster, or your own).
#   hack/test.sh [pytest args...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"
started=$SECONDS

"$HACK_DIR/python.sh"
# shellcheck disable=SC1091
source "${PARAFLOW_VENV:-$REPO_DIR/.venv}/bin/activate"

# Checked once per run: the kind tier runs this script again for its pytest only.
if [ "${PARAFLOW_TEST_PREPARED:-0}" != 1 ]; then
  log "static checks: ruff, mypy (strict), import-linter, CRD drift"
  ruff format --check --quiet .
  ruff check --quiet .
  mypy
  lint-imports --no-cache >/dev/null
  python -m paraflow.crdgen --check
  "$HACK_DIR/render-deploy.sh" --check

  # Our images, built with no registry (a Docker engine is started if none answers).
  "$HACK_DIR/images.sh"
fi

run_pytest() { # default suites... -- pytest args...
  local suites=()
  while [ "$1" != "--" ]; do suites+=("$1"); shift; done; shift
  if [ $# -gt 0 ]; then python -m pytest "$@"; else python -m pytest "${suites[@]}"; fi
}

# One local cluster's tier, in a subshell so its environment stays its own.
cluster_tier() ( # podrunner|kubelet default-suites... -- pytest args...
  export PARAFLOW_CLUSTER_NODE=$1; shift
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
  log "pytest on the $PARAFLOW_CLUSTER_NODE cluster"
  run_pytest "$@"
)

if [ "${PARAFLOW_TEST_EXTERNAL:-0}" = 1 ]; then
  # tests/local needs a local cluster (pod runner, KWOK nodes, restarts of its processes).
  log "pytest on KUBECONFIG=$KUBECONFIG"
  run_pytest tests/unit tests/integration tests/e2e -- "$@"
else
  "$HACK_DIR/build.sh" all
  tiers=(podrunner kubelet kind)
  [ -n "${PARAFLOW_CLUSTER_NODE:-}" ] && tiers=("$PARAFLOW_CLUSTER_NODE")
  if [ "${PARAFLOW_REAL_NODE:-1}" = 0 ] && [ -z "${PARAFLOW_CLUSTER_NODE:-}" ]; then
    log "PARAFLOW_REAL_NODE=0: SKIPPING the real-kubelet and kind tiers; our images are not tested in real pods"
    tiers=(podrunner)
  fi
  # Every tier runs even if an earlier one failed: one run shows every failure.
  failed=()
  for tier in "${tiers[@]}"; do
    case $tier in
      kubelet)
        [ "$(id -u)" = 0 ] || die "the real-kubelet tier needs root (PARAFLOW_REAL_NODE=0 skips it)"
        cluster_tier kubelet tests/integration tests/e2e -- "$@" || failed+=("$tier") ;;
      kind)
        [ "$(id -u)" = 0 ] || die "the kind tier builds its node image as root (PARAFLOW_REAL_NODE=0 skips it)"
        log "pytest on a kind cluster"
        PARAFLOW_TEST_PREPARED=1 "$HACK_DIR/e2e-kind.sh" "$@" || failed+=("$tier") ;;
      *) cluster_tier podrunner tests -- "$@" || failed+=("$tier") ;;
    esac
  done
  [ ${#failed[@]} -eq 0 ] || die "tests failed on: ${failed[*]} (after $((SECONDS - started))s)"
fi
log "all tests passed in $((SECONDS - started))s"
