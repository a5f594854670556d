#!/usr/bin/env bash
# The local test cluster: a real Kubernetes control plane, KWOK fake nodes, the test pod
# runner and two MinIO servers, all as processes on 127.0.0.1. Real containers are kind's
# (hack/e2e-kind.sh): the same kubelet, containerd and runc, in a node users test with.
#   hack/cluster.sh up       build what is missing, start everything, wait for health
#   hack/cluster.sh down     stop every process this script started (by recorded PID)
#   hack/cluster.sh status   one line per component
#   hack/cluster.sh env      print the exports tests and tools need (eval "$(hack/cluster.sh env)")
#   hack/cluster.sh operator install the CRD and run the operator as a local process (the demo's)
#   hack/cluster.sh operator-stop   stop it (hack/test.sh does, while the suite runs its own)
#   hack/cluster.sh restart kube-apiserver|minio|minio2   (fault-injection tests)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

API_PORT=${PARAFLOW_API_PORT:-16443}
ETCD_PORT=${PARAFLOW_ETCD_PORT:-12379}
KCM_PORT=${PARAFLOW_KCM_PORT:-10357}
SCHED_PORT=${PARAFLOW_SCHED_PORT:-10359}
KWOK_PORT=${PARAFLOW_KWOK_PORT:-10347}
MINIO_PORT=${PARAFLOW_MINIO_PORT:-19000}
MINIO2_PORT=${PARAFLOW_MINIO2_PORT:-19100}
KWOK_NODES=${PARAFLOW_KWOK_NODES:-2}
KUBELET_PORT=${PARAFLOW_KUBELET_PORT:-10350}
PODRUNNER_NODE=podrunner
S3_ACCESS_KEY=paraflow
S3_SECRET_KEY=paraflow-local-secret
VENV=${PARAFLOW_VENV:-$REPO_DIR/.venv}

K8S_BIN=$(bin_dir kubernetes "$K8S_VERSION")
ETCD_BIN=$(bin_dir etcd "$ETCD_VERSION")
PIDS=$STATE_DIR/pids
LOGS=$STATE_DIR/logs
PKI=$STATE_DIR/pki
KUBECONFIG_FILE=$STATE_DIR/admin.kubeconfig
LISTEN_IP=127.0.0.1
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok podrunner minio minio2 operator)
API_URL=https://$LISTEN_IP:$API_PORT

kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# Each component gets its own session, so stopping it also stops whatever it spawned
# (the pod runner's pod processes) without ever matching processes by name.
start() { # name env-assignments... -- command...
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  alive "$name" && { log "$name already running"; return 0; }
  # Appended, never truncated: a restarted component's log keeps its predecessor's last lines.
  env "${envs[@]}" setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$PIDS/$name.pid"
}

wait_for() { # description timeout-seconds command...
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && die "$what did not become ready in ${timeout}s (logs: $LOGS)"
    sleep 0.5
  done
}

make_pki() {
  [ -f "$PKI/sa.key" ] && return 0
  mkdir -p "$PKI"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  local token; token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  echo "$token,paraflow-admin,paraflow-admin,\"system:masters\"" >"$PKI/tokens.csv"
  echo "$token" >"$PKI/admin.token"
  # The pod runner's kubelet port (container logs); the apiserver does not verify it.
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=podrunner" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$PKI/podrunner.key" -out "$PKI/podrunner.crt" 2>/dev/null
  chmod 600 "$PKI"/*
  # Every write, with its user agent and time: tests check the operator's global rate cap
  # against what the apiserver really received.
  cat >"$PKI/audit-policy.yaml" <<YAML
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
    resources:  # what the operator writes; pods, leases and nodes (most writes) stay out
      - {group: batch, resources: [jobs]}
      - {group: paraflow.dev, resources: [parallelworkflows, parallelworkflows/status]}
      - {group: "", resources: [events]}
      - {group: events.k8s.io, resources: [events]}
  - level: None
YAML
}

write_kubeconfig() { # path user token-file: a kubeconfig for this cluster with that user's token
  local tmp=$1.tmp
  rm -f "$tmp"
  "$K8S_BIN/kubectl" --kubeconfig "$tmp" config set-cluster paraflow-local \
    --server="$API_URL" --certificate-authority="$PKI/apiserver.crt" --embed-certs >/dev/null
  "$K8S_BIN/kubectl" --kubeconfig "$tmp" config set-credentials "$2" --token="$(cat "$3")" >/dev/null
  "$K8S_BIN/kubectl" --kubeconfig "$tmp" config set-context paraflow-local --cluster=paraflow-local --user="$2" >/dev/null
  "$K8S_BIN/kubectl" --kubeconfig "$tmp" config use-context paraflow-local >/dev/null
  mv "$tmp" "$1"
}

kwok_stages() {
  local out=$STATE_DIR/kwok-stages.yaml dir
  dir=$(cd "$STATE_DIR" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  # A standalone kwok exits with "no stages found" unless it is given its stages: those of
  # "fast" (node-initialize + heartbeat-with-lease + pod-ready/complete/delete), with our
  # pod-complete (hack/kwok/pod-complete.yaml: task lengths, Argo's pods) for theirs.
  {
    "$K8S_BIN/kubectl" kustomize "$dir/kustomize/stage/node/fast"
    echo ---
    "$K8S_BIN/kubectl" kustomize "$dir/kustomize/stage/node/heartbeat-with-lease"
    for stage in pod-ready pod-delete; do echo ---; cat "$dir/kustomize/stage/pod/fast/$stage.yaml"; done
    echo ---
    cat "$HACK_DIR/kwok/pod-complete.yaml"
  } >"$out"
  echo "$out"
}

fake_nodes() {
  local i
  for i in $(seq 0 $((KWOK_NODES - 1))); do
    # Tainted so that only workloads that ask for fake nodes land on them: nothing runs there.
    kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: kwok-$i
  labels: {type: kwok, kubernetes.io/hostname: kwok-$i, paraflow.dev/test-node: kwok}
  annotations: {kwok.x-k8s.io/node: fake}
spec:
  taints: [{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "20000"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "20000"}
YAML
  done
}

start_apiserver() {
  start kube-apiserver -- "$K8S_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$LISTEN_IP" --advertise-address="$LISTEN_IP" --secure-port="$API_PORT" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --cert-dir="$PKI" --authorization-mode=Node,RBAC --token-auth-file="$PKI/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" --service-cluster-ip-range=10.96.0.0/16 \
    --audit-policy-file="$PKI/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" --audit-log-maxsize=1024 \
    --allow-privileged=true --profiling=false --max-requests-inflight=800 --max-mutating-requests-inflight=400
}

start_minio() { # name port
  start "$1" MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY MINIO_BROWSER=off -- \
    "$(bin_dir minio "$MINIO_VERSION")/minio" server "$STATE_DIR/$1" --address "$LISTEN_IP:$2" --quiet
}

stop() { # name: by recorded PID, the whole session, TERM then KILL
  [ -f "$PIDS/$1.pid" ] || return 0
  local pid; pid=$(cat "$PIDS/$1.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$1.pid"
}

# For fault-injection tests: stop one component and start it again, keeping its data.
cmd_restart() {
  case ${1:-} in
    kube-apiserver)
      stop kube-apiserver; start_apiserver
      wait_for kube-apiserver 90 curl -fsSk "$API_URL/readyz" -H "Authorization: Bearer $(cat "$PKI/admin.token")" ;;
    minio|minio2)
      local port=$MINIO_PORT; [ "$1" = minio2 ] && port=$MINIO2_PORT
      stop "$1"; start_minio "$1" "$port"
      wait_for "$1" 60 curl -fsS "http://$LISTEN_IP:$port/minio/health/ready" ;;
    *) die "restart supports kube-apiserver, minio, minio2" ;;
  esac
  log "$1 restarted"
}

# A port already taken (say, by a process left from an interrupted run) would make a component
# exit at once, or worse, let health checks reach the stranger: refuse to start instead.
check_ports() {
  local port
  for port in "$ETCD_PORT" "$((ETCD_PORT + 1))" "$API_PORT" "$KCM_PORT" "$SCHED_PORT" "$KWOK_PORT" "$KUBELET_PORT" \
    "$MINIO_PORT" "$MINIO2_PORT"; do
    if ss -ltn "sport = :$port" | grep -q LISTEN; then
      die "port $port is in use ($(ss -ltnpH "sport = :$port" | sed 's/.*users://')); stop that process or set PARAFLOW_*_PORT"
    fi
  done
}

cmd_up() {
  alive kube-apiserver || check_ports
  [ -x "$K8S_BIN/kube-apiserver" ] && [ -x "$ETCD_BIN/etcd" ] || "$HACK_DIR/build.sh" all
  "$HACK_DIR/python.sh"
  mkdir -p "$PIDS" "$LOGS" "$STATE_DIR/minio" "$STATE_DIR/minio2" "$STATE_DIR/pod-logs"
  make_pki

  start etcd -- "$ETCD_BIN/etcd" --name=paraflow --data-dir="$STATE_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls="http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster="paraflow=http://127.0.0.1:$((ETCD_PORT + 1))" --unsafe-no-fsync --log-level=warn \
    --quota-backend-bytes=8589934592
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  start_apiserver
  wait_for kube-apiserver 90 curl -fsSk "$API_URL/readyz" -H "Authorization: Bearer $(cat "$PKI/admin.token")"
  write_kubeconfig "$KUBECONFIG_FILE" paraflow-admin "$PKI/admin.token"

  start kube-controller-manager -- "$K8S_BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_FILE" \
    --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/apiserver.crt" \
    --service-cluster-ip-range=10.96.0.0/16 --controllers='*' \
    --kube-api-qps=200 --kube-api-burst=400 --concurrent-job-syncs=20
  start kube-scheduler -- "$K8S_BIN/kube-scheduler" --kubeconfig="$KUBECONFIG_FILE" \
    --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --leader-elect=false \
    --kube-api-qps=200 --kube-api-burst=400
  wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for kube-scheduler 60 curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"
  wait_for "default service account" 60 kubectl get serviceaccount default -n default

  start_process_nodes

  start_minio minio "$MINIO_PORT"
  start_minio minio2 "$MINIO2_PORT"
  wait_for minio 60 curl -fsS "http://$LISTEN_IP:$MINIO_PORT/minio/health/ready"
  wait_for minio2 60 curl -fsS "http://$LISTEN_IP:$MINIO2_PORT/minio/health/ready"
  cmd_env >"$STATE_DIR/env"
  log "cluster is up: eval \"\$(hack/cluster.sh env)\""
}

# KWOK's fake nodes and the pod runner, which runs pods as local processes.
start_process_nodes() {
  start kwok -- "$(bin_dir kwok "$KWOK_VERSION")/kwok" --kubeconfig="$KUBECONFIG_FILE" \
    --config="$(kwok_stages)" --manage-all-nodes=false --manage-nodes-with-label-selector=type=kwok \
    --cidr=10.244.0.0/16 --node-ip=10.244.0.1 --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$KWOK_PORT"
  fake_nodes

  start podrunner -- "$VENV/bin/python" "$HACK_DIR/podrunner/podrunner.py" --kubeconfig "$KUBECONFIG_FILE" \
    --node-name "$PODRUNNER_NODE" --images "$HACK_DIR/podrunner/images.yaml" --log-dir "$STATE_DIR/pod-logs" \
    --kubelet-port "$KUBELET_PORT" --tls-cert "$PKI/podrunner.crt" --tls-key "$PKI/podrunner.key"
  wait_for "pod runner node" 60 kubectl wait --for=condition=Ready "node/$PODRUNNER_NODE" --timeout=1s
  wait_for "kwok nodes" 60 kubectl wait --for=condition=Ready node -l type=kwok --timeout=1s
}

# The operator as a local process against the local cluster (the demo's; tests start their own).
cmd_operator() {
  alive kube-apiserver || die "the cluster is not up: hack/cluster.sh up"
  "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" apply --server-side -f "$REPO_DIR/crds/" >/dev/null
  start operator KUBECONFIG="$KUBECONFIG_FILE" PARAFLOW_WORKER_IMAGE=paraflow/worker:0.1.0 -- \
    "$VENV/bin/paraflow" operator --liveness "http://127.0.0.1:${PARAFLOW_OPERATOR_HEALTH_PORT:-18080}/healthz"
  wait_for operator 60 curl -fsS "http://127.0.0.1:${PARAFLOW_OPERATOR_HEALTH_PORT:-18080}/healthz"
  log "operator running (log: $LOGS/operator.log)"
}

cmd_down() {
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[$i]}"; done
  # Cluster state is disposable: the next `up` starts from an empty etcd and empty buckets.
  rm -rf "$STATE_DIR"
  log "cluster is down"
}

cmd_status() {
  local name rc=0
  for name in "${COMPONENTS[@]}"; do
    if alive "$name"; then echo "$name: running (pid $(cat "$PIDS/$name.pid"))"
  elif [ "$name" = operator ]; then echo "$name: not started (hack/cluster.sh operator)"
  else echo "$name: stopped"; rc=1; fi
  done
  return $rc
}

cmd_env() {
  cat <<ENV
export KUBECONFIG=$KUBECONFIG_FILE
export PATH=$K8S_BIN:$(bin_dir helm "$HELM_KEY"):$(bin_dir mc "$MC_VERSION"):$(bin_dir prometheus "$PROMETHEUS_VERSION"):\$PATH
export PARAFLOW_TEST_SERVICEMONITOR_CRD=$(bin_dir prometheus-operator-crds "$PROMETHEUS_OPERATOR_VERSION")/monitoring.coreos.com_servicemonitors.yaml
export PARAFLOW_TEST_S3_ENDPOINT=http://$LISTEN_IP:$MINIO_PORT
export PARAFLOW_TEST_S3_ENDPOINT_2=http://$LISTEN_IP:$MINIO2_PORT
export PARAFLOW_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY
export PARAFLOW_TEST_S3_SECRET_KEY=$S3_SECRET_KEY
export PARAFLOW_TEST_PODRUNNER_NODE=$PODRUNNER_NODE
export PARAFLOW_TEST_POD_LOGS=$STATE_DIR/pod-logs
export PARAFLOW_TEST_KWOK=1
export PARAFLOW_TEST_AUDIT_LOG=$LOGS/audit.log
ENV
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  # What `up` recorded: the ports it really used, whatever this shell sets.
  env) if [ -f "$STATE_DIR/env" ]; then cat "$STATE_DIR/env"; else cmd_env; fi ;;
  operator) cmd_operator ;;
  operator-stop) stop operator; log "operator stopped" ;;
  restart) cmd_restart "${2:-}" ;;
  *) echo "usage: $0 up|down|status|env|operator|operator-stop|restart NAME" >&2; exit 2 ;;
esac
