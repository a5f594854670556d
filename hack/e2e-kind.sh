#!/usr/bin/env bash
# The suites on kind: our images in real pods on a cluster with CoreDNS, kube-proxy and kubeadm's
# static pods, as users run it. `make e2e-kind` runs every tier that any cluster can run there
# (storage, cluster, runtime); `make test` only the runtime tier (PARAFLOW_TEST_MARKERS=runtime).
#   hack/e2e-kind.sh                                      the node image built here, offline
#                                                         (hack/kind-image.sh)
#   PARAFLOW_KIND_IMAGE=kindest/node:v1.36.1 hack/e2e-kind.sh   kind's stock image, from its registry
#   KEEP=1 hack/e2e-kind.sh                               keep the cluster and MinIO afterwards
#   hack/e2e-kind.sh down                                 delete a kept cluster, stop its MinIO
# The two paths differ only in `--image`. kind itself is built here (`go install`) unless one is on
# PATH. Nodes run on Docker where Docker can start kind's privileged containers, otherwise on
# podman (kind's KIND_EXPERIMENTAL_PROVIDER=podman, installed from Debian if missing); images
# are built with Docker either way and loaded with `kind load docker-image`. MinIO runs on this
# host, bound to the kind network's gateway: pods and the tests reach it at the same URL.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"
CLUSTER=${PARAFLOW_KIND_CLUSTER:-paraflow-e2e}
KIND_STATE=${PARAFLOW_KIND_STATE:-/tmp/paraflow-kind}
started=$SECONDS

command -v kind >/dev/null || PATH=$(bin_dir kind "$KIND_VERSION"):$PATH
if [ "${1:-}" != down ]; then  # taking a cluster down builds and installs nothing
  "$HACK_DIR/build.sh" minio helm
  command -v kind >/dev/null || "$HACK_DIR/build.sh" kind
fi
mkdir -p "$KIND_STATE"

# kind's nodes on podman. podman raises a container's open-files and process limits to 1048576,
# which fails where this process's own hard limits are lower and raising them is not allowed (no
# CAP_SYS_RESOURCE): nodes start at the limits we have, with no pids cap of podman's own.
use_podman() {
  export KIND_EXPERIMENTAL_PROVIDER=podman
  command -v podman >/dev/null || {
    [ "$(id -u)" = 0 ] || die "podman is missing and installing it needs root: apt-get install podman"
    log "installing Debian's podman"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null
  }
  # Processes: podman itself runs with at most kernel.pid_max of them (measured: 32768 here, with
  # a hard limit of 96365 in the shell), and a container cannot be given more than its runtime has.
  local files procs pid_max
  files=$(ulimit -Hn); procs=$(ulimit -Hu); pid_max=$(cat /proc/sys/kernel/pid_max)
  [ "$files" != unlimited ] || files=-1
  if [ "$procs" = unlimited ] || [ "$procs" -gt "$pid_max" ]; then procs=$pid_max; fi
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\npids_limit = 0\n' \
    "$files" "$files" "$procs" "$procs" >"$KIND_STATE/containers.conf"
  export CONTAINERS_CONF=$KIND_STATE/containers.conf
  # kind bind-mounts /lib/modules into every node; podman, unlike Docker, refuses a missing source
  # (kernels built without modules have none).
  [ -d /lib/modules ] || mkdir -p /lib/modules
  # A range of its own, so a host bridge in podman's next free 10.89.x.0/24 cannot collide.
  podman network exists kind 2>/dev/null ||
    podman network create --subnet "${PARAFLOW_KIND_SUBNET:-10.90.0.0/24}" kind >/dev/null
}

stop_minio() {
  local f; for f in "$KIND_STATE"/minio-*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

if [ "${1:-}" = down ]; then
  if command -v kind >/dev/null; then
    if [ -f "$KIND_STATE/provider" ] && [ "$(cat "$KIND_STATE/provider")" = podman ]; then
      command -v podman >/dev/null && use_podman
    fi
    kind delete cluster --name "$CLUSTER" || true
  fi
  stop_minio
  exit 0
fi

[ "${PARAFLOW_TEST_PREPARED:-0}" = 1 ] || "$HACK_DIR/images.sh"
if [ -z "${KIND_EXPERIMENTAL_PROVIDER:-}" ]; then
  # kind starts every node --privileged. Some Docker engines cannot (a VM whose capability
  # bounding set lacks CAP_SYS_RESOURCE: runc fails "unable to apply caps"); podman can there.
  if ! probe=$(docker run --rm --privileged --network none --entrypoint /bin/true \
    "paraflow/debian-base:bookworm-py3" 2>&1); then
    log "Docker cannot start privileged containers here ($(echo "$probe" | grep -o 'unable to apply caps[^:]*: [^:]*' || echo "${probe%%$'\n'*}")): kind runs its nodes on podman"
    use_podman
  fi
elif [ "$KIND_EXPERIMENTAL_PROVIDER" = podman ]; then
  use_podman
fi
ENGINE=${KIND_EXPERIMENTAL_PROVIDER:-docker}
echo "$ENGINE" >"$KIND_STATE/provider"

node_image=${PARAFLOW_KIND_IMAGE:-}
[ -n "$node_image" ] || node_image=$("$HACK_DIR/kind-image.sh" | tail -1)

cleanup() {
  kind delete cluster --name "$CLUSTER" || true
  stop_minio
}
[ "${KEEP:-0}" = 1 ] || trap cleanup EXIT
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "kind create cluster $CLUSTER ($node_image, $ENGINE)"
  # --retain: a node that fails to come up stays for `kind export logs`, then the trap removes it.
  kind create cluster --name "$CLUSTER" --image "$node_image" --config "$HACK_DIR/kind/cluster.yaml" \
    --wait 180s --retain || {
    kind export logs --name "$CLUSTER" "$KIND_STATE/logs" >/dev/null 2>&1 || true
    die "kind create cluster failed: node logs in $KIND_STATE/logs"
  }
fi
"$HACK_DIR/kueue.sh" image
kind load docker-image --name "$CLUSTER" "paraflow/operator:$PROJECT_VERSION" "paraflow/worker:$PROJECT_VERSION" \
  "paraflow/kueue:$KUEUE_VERSION"
export KUBECONFIG=$KIND_STATE/kubeconfig
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
# Kueue, for the queue tests (marker kueue): here they must run, never be deselected.
PATH=$(bin_dir kubernetes "$K8S_VERSION"):$PATH "$HACK_DIR/kueue.sh" install
export PARAFLOW_TEST_REQUIRE_KUEUE=1

# The gateway of kind's network: Docker, podman with netavark, and podman with CNI each report it
# in their own shape.
gateway=$("$ENGINE" network inspect kind | python3 -c '
import ipaddress, json, sys
net = json.load(sys.stdin)[0]
found = [c.get("Gateway") for c in (net.get("IPAM") or {}).get("Config") or []]
found += [s.get("gateway") for s in net.get("subnets") or []]
for plugin in net.get("plugins") or []:
    found += [r.get("gateway") for rs in (plugin.get("ipam") or {}).get("ranges") or [] for r in rs]
print(next(g for g in found if g and ipaddress.ip_address(g).version == 4))')
minio=$(bin_dir minio "$MINIO_VERSION")/minio
export PARAFLOW_TEST_S3_ACCESS_KEY=paraflow PARAFLOW_TEST_S3_SECRET_KEY=paraflow-kind-secret
# Ports of their own: MinIO also listens on loopback whatever --address says, so the local
# cluster's MinIO (still up after `make demo`) on 19000/19100 would share those sockets with these.
for port in 19200 19300; do
  pidfile=$KIND_STATE/minio-$port.pid
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && continue
  MINIO_ROOT_USER=$PARAFLOW_TEST_S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$PARAFLOW_TEST_S3_SECRET_KEY \
    setsid "$minio" server "$KIND_STATE/minio-$port" --address "$gateway:$port" --quiet \
    >"$KIND_STATE/minio-$port.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
done
export PARAFLOW_TEST_S3_ENDPOINT=http://$gateway:19200 PARAFLOW_TEST_S3_ENDPOINT_2=http://$gateway:19300
for url in "$PARAFLOW_TEST_S3_ENDPOINT" "$PARAFLOW_TEST_S3_ENDPOINT_2"; do
  for _ in $(seq 60); do curl -sf "$url/minio/health/ready" >/dev/null && break; sleep 0.5; done
  curl -sf "$url/minio/health/ready" >/dev/null || die "MinIO at $url did not start (log: $KIND_STATE)"
done
log "kind cluster ready in $((SECONDS - started))s; MinIO at $PARAFLOW_TEST_S3_ENDPOINT and $PARAFLOW_TEST_S3_ENDPOINT_2"
export PATH=$(bin_dir helm "$HELM_KEY"):$(bin_dir kubernetes "$K8S_VERSION"):$PATH PARAFLOW_TEST_EXTERNAL=1
# Static checks and images are done (make test did them, or this script): pytest only.
PARAFLOW_TEST_PREPARED=1 "$HACK_DIR/test.sh" "$@"
