#!/usr/bin/env bash
# A Docker engine for building images, with no registry: Debian's docker.io, started as root.
#   hack/docker.sh up      install docker.io if missing, start dockerd unless one already answers
#   hack/docker.sh down    stop the dockerd this script started (by its PID), and nothing else
#   hack/docker.sh status
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DOCKER_STATE=${PARAFLOW_DOCKER_STATE:-/var/run/paraflow-docker}
PIDFILE=$DOCKER_STATE/dockerd.pid

docker_cli() { if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker; fi; }

cmd_up() {
  if command -v docker >/dev/null && "$(docker_cli)" info >/dev/null 2>&1; then
    log "a Docker engine already answers; using it"
    return 0
  fi
  if ! command -v dockerd >/dev/null; then
    [ "$(id -u)" = 0 ] || die "dockerd is missing and installing it needs root: apt-get install docker.io"
    log "installing Debian's docker.io"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  mkdir -p "$DOCKER_STATE"
  setsid dockerd --pidfile "$PIDFILE" >"$DOCKER_STATE/dockerd.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + 60))
  until "$(docker_cli)" info >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "dockerd did not start (log: $DOCKER_STATE/dockerd.log)"
    sleep 0.5
  done
  log "dockerd running (pid $(cat "$PIDFILE"))"
}

cmd_down() {
  [ -f "$PIDFILE" ] || { log "no dockerd started by paraflow"; return 0; }
  local pid; pid=$(cat "$PIDFILE")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  rm -f "$PIDFILE"
  log "dockerd stopped"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) "$(docker_cli)" info --format 'docker {{.ServerVersion}}, {{.Images}} images' ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
