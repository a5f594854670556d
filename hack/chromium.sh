#!/usr/bin/env bash
# Headless Chromium for the Map Run view's tests and benchmark: Debian's package (no registry and
# no download site is reachable here, so never Playwright's own build). Prints its path.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if ! command -v chromium >/dev/null; then
  log "installing Debian's chromium (the view's browser tests)"
  if ! DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/tmp/paraflow-chromium-install.log 2>&1; then
    tail -20 /tmp/paraflow-chromium-install.log
    die "cannot install Debian's chromium: install it (apt-get install chromium) or put one on PATH"
  fi
fi
command -v chromium
