#!/usr/bin/env bash
# Builds paraflow's images with no registry: a Debian base made by debootstrap + docker import
# (from the mirror apt is configured with), Python wheels built on the host, and
# the Dockerfile's two targets (operator, worker) built FROM that base with no network inside the build.
#   hack/images.sh            -> paraflow/operator:<version>, paraflow/worker:<version>
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"
"$HACK_DIR/docker.sh" up
DOCKER=$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker )
SUITE=${PARAFLOW_BASE_SUITE:-bookworm}
BASE=paraflow/debian-base:$SUITE-py3
PY="${PARAFLOW_VENV:-$REPO_DIR/.venv}/bin/python"

if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  debootstrap_minbase "$SUITE" python3,python3-venv,ca-certificates "$rootfs"
  tar -C "$rootfs" -c . | "$DOCKER" import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi

log "building wheels on the host"
rm -rf dist/wheels && mkdir -p dist/wheels
"$PY" -m pip wheel -q --wheel-dir dist/wheels ".[operator]" >/dev/null

for role in worker operator; do
  log "building paraflow/$role:$PROJECT_VERSION"
  "$DOCKER" build -q --network none --build-arg "BASE_IMAGE=$BASE" --target "$role" -t "paraflow/$role:$PROJECT_VERSION" . >/dev/null
done
"$DOCKER" images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^paraflow/'
