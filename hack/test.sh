#!/usr/bin/env bash
# The whole test suite: static checks, then unit, integration and e2e tests against a real
# cluster. Without PARAFLOW_TEST_EXTERNAL=1 it uses the local cluster (started here, and stopped
# again if this script started it). With PARAFLOW_TEST_EXTERNAL=1 it uses KUBECONFIG and the
# PARAFLOW_TEST_S3_* endpoint you exported (a kind cluster, or your own).
#   hack/test.sh [pytest args...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"
started=$SECONDS

"$HACK_DIR/python.sh"
# shellcheck disable=SC1091
source "${PARAFLOW_VENV:-$REPO_DIR/.venv}/bin/activate"

log "static checks: ruff, mypy (strict), import-linter, CRD drift"
ruff format --check --quiet .
ruff check --quiet .
mypy
lint-imports --no-cache >/dev/null
python -m paraflow.crdgen --check
"$HACK_DIR/render-deploy.sh" --check

# Our images, built with no registry (a Docker engine is started if none answers).
"$HACK_DIR/images.sh"

suites=(tests)
if [ "${PARAFLOW_TEST_EXTERNAL:-0}" = 1 ]; then
  # tests/local needs the local cluster (pod runner, KWOK nodes, restarts of its processes).
  suites=(tests/unit tests/integration tests/e2e)
else
  "$HACK_DIR/build.sh" all
  if ! "$HACK_DIR/cluster.sh" status >/dev/null 2>&1; then
    "$HACK_DIR/cluster.sh" down >/dev/null 2>&1 || true
    "$HACK_DIR/cluster.sh" up
    [ "${PARAFLOW_KEEP_CLUSTER:-0}" = 1 ] || trap '"$HACK_DIR/cluster.sh" down' EXIT
  fi
  eval "$("$HACK_DIR/cluster.sh" env)"
fi

log "pytest"
if [ $# -gt 0 ]; then python -m pytest "$@"; else python -m pytest "${suites[@]}"; fi
log "all tests passed in $((SECONDS - started))s"
