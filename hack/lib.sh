# Shared by the hack/ scripts: pinned versions, cache and state locations, logging.
# shellcheck shell=bash
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$HACK_DIR")
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

# The version our images are tagged with.
PROJECT_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_DIR/pyproject.toml")

# Built binaries live outside the repo so a clean clone (and CI) reuses them.
CACHE_DIR=${PARAFLOW_CACHE:-$HOME/.cache/paraflow}
# Runtime state (etcd data, certificates, logs, pid files) of the local cluster.
STATE_DIR=${PARAFLOW_STATE:-/tmp/paraflow-cluster}

# Only the proxy: "direct" would try hosts this machine cannot reach.
export GOPROXY=${GOPROXY_OVERRIDE:-https://proxy.golang.org}
export GOFLAGS=-buildvcs=false
export GOTOOLCHAIN=local

log() { printf '\033[1;34m[paraflow]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[paraflow] error:\033[0m %s\n' "$*" >&2; exit 1; }

bin_dir() { echo "$CACHE_DIR/bin/$1-$2"; }

K8S_MINOR=${K8S_VERSION#*.}; K8S_MINOR=${K8S_MINOR%%.*}
# helm is built for one Kubernetes minor (its default capabilities): keyed by both versions.
HELM_KEY=$HELM_VERSION-k8s1.$K8S_MINOR

# The mirror apt already uses (deb822 sources first, then the one-line format).
apt_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || die "no Debian mirror found in apt's sources"
  echo "$uri"
}

# A minimal Debian root in DIR (debootstrap --variant=minbase), apt's caches left out.
debootstrap_minbase() { # suite packages dir
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  local mirror; mirror=$(apt_mirror)
  log "debootstrap $1 from $mirror (minbase + $2)"
  debootstrap --variant=minbase --include="$2" "$1" "$3" "$mirror" >"$3.log" 2>&1 ||
    { tail -20 "$3.log"; die "debootstrap failed"; }
  rm -rf "$3"/var/cache/apt/archives/*.deb "$3"/var/lib/apt/lists/* "$3.log"
}
