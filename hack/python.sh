#!/usr/bin/env bash
# Creates (or refreshes) the project's virtualenv at .venv with the dev extras, editable.
# Re-running is cheap: pip skips what is already satisfied.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
VENV=${PARAFLOW_VENV:-$REPO_DIR/.venv}
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "paraflow needs Python >= 3.11"'
[ -x "$VENV/bin/python" ] || { log "creating virtualenv $VENV"; "$PY" -m venv "$VENV"; }
stamp="$VENV/.paraflow-installed"
if [ ! -f "$stamp" ] || [ "$REPO_DIR/pyproject.toml" -nt "$stamp" ]; then
  log "installing paraflow[dev] into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$REPO_DIR[dev]"
  touch "$stamp"
fi
