# The real node of the local cluster (PARAFLOW_CLUSTER_NODE=kubelet): a kubelet, containerd,
# runc and kube-proxy on this host, joined to the local control plane, so pods are real
# containers of our images with real networking, Service IPs and ServiceAccount tokens.
# Sourced by hack/cluster.sh, which provides start/stop/alive/wait_for/kubectl.
# shellcheck shell=bash
#
# Layout: everything lives under $STATE_DIR (containerd's root and state, the kubelet's root,
# CNI config and IP allocations) except what the kernel keeps globally: the bridge $NODE_BRIDGE,
# one FORWARD rule for it, kube-proxy's chains and the cgroup subtree /$NODE_CGROUP. `node_down`
# removes each of those by its exact name, never by matching other processes or devices.

NODE_NAME=paraflow-node
NODE_BRIDGE=pfbr0
NODE_SUBNET=10.89.0.0/16
NODE_IP=10.89.0.1 # the bridge's address: the apiserver, MinIO and the kubelet listen on it
NODE_CGROUP=paraflow
NODE_KUBELET_PORT=${PARAFLOW_NODE_KUBELET_PORT:-10250}
NODE_DIR=$STATE_DIR/node
CONTAINERD_SOCK=$NODE_DIR/containerd/containerd.sock
PAUSE_IMAGE=localhost/paraflow-pause:$PAUSE_VERSION
# A bridge-plugin pod network on one host needs no overlay; no masquerading, as pods only talk
# to this host (MinIO, the apiserver) and to each other.
FORWARD_RULE=(FORWARD -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j ACCEPT)

crictl() { "$(bin_dir crictl "$CRICTL_VERSION")/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" "$@"; }
ctr() { /usr/bin/ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

node_require() {
  [ "$(id -u)" = 0 ] || die "the real node (PARAFLOW_CLUSTER_NODE=kubelet) runs a kubelet and containerd: run as root"
  [ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || die "no cgroup filesystem at /sys/fs/cgroup"
  local missing=() pkg
  for pkg in containerd runc containernetworking-plugins iptables conntrack; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  "$HACK_DIR/build.sh" node
}

# Created before anything listens on $NODE_IP; the CNI bridge plugin adopts an existing bridge.
node_network_up() {
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
  ip addr show dev "$NODE_BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/${NODE_SUBNET#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Pod -> Service -> pod on one bridge goes through iptables only with bridge netfilter on.
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # Docker sets the FORWARD policy to DROP; pod-to-pod traffic on our bridge must pass.
  iptables -C "${FORWARD_RULE[@]}" 2>/dev/null || iptables -I "${FORWARD_RULE[@]}"
}

node_pki() { # a CA for the kubelet to trust the apiserver's client certificate, and node tokens
  [ -f "$PKI/ca.crt" ] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=paraflow-local-ca" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$PKI/kubelet-client.key" -out "$PKI/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/kubelet-client.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -out "$PKI/kubelet-client.crt" 2>/dev/null
  local who token
  # The Node authorizer and NodeRestriction know a kubelet by this user and group; kube-proxy's
  # user is bound to system:node-proxier by the apiserver's default policy.
  for who in "system:node:$NODE_NAME,system:nodes" "system:kube-proxy,system:node-proxiers"; do
    token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    echo "$token,${who%%,*},${who%%,*},\"${who#*,}\"" >>"$PKI/tokens.csv"
    echo "$token" >"$PKI/${who%%,*}.token"
  done
  chmod 600 "$PKI"/*
}

node_kubeconfig() { # user file-stem -> path of a kubeconfig with that user's token
  write_kubeconfig "$NODE_DIR/$2.kubeconfig" "$1" "$PKI/$1.token"
  echo "$NODE_DIR/$2.kubeconfig"
}

node_has_cap_sys_resource() { # bit 24 of the effective capability set
  local eff; eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
  (( (16#$eff >> 24) & 1 ))
}

node_containerd_config() {
  mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni/net.d"
  cat >"$NODE_DIR/containerd/config.toml" <<TOML
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The kubelet asks for negative OOM scores (-998 for every pod sandbox), which need
  # CAP_SYS_RESOURCE; sandboxed CI machines often lack it. Clamp to containerd's own score.
  restrict_oom_score_adj = $(node_has_cap_sys_resource && echo false || echo true)
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
TOML
  cat >"$NODE_DIR/cni/net.d/10-paraflow.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "paraflow", "plugins": [{
  "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_SUBNET", "gateway": "$NODE_IP"}]],
           "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$NODE_DIR/cni/ipam"}}]}
JSON
}

node_kubelet_config() {
  cat >"$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $NODE_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# No systemd here and containerd's runc uses cgroupfs: both sides must agree. Kubelet >= 1.35
# refuses cgroup v1 hosts unless told otherwise; this VM's kernel mounts v1.
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
failCgroupV1: false
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
resolvConf: /etc/resolv.conf
# Images are imported, never pulled: garbage-collecting one would break the next pod.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
YAML
  cat >"$NODE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $(node_kubeconfig system:kube-proxy kube-proxy)}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_SUBNET
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
}

# The kubelet wants its cgroup root to exist in every v1 hierarchy; a new cpuset cgroup starts
# with no CPUs or memory nodes, so it inherits the parent's.
node_cgroups() {
  local c
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c" ] && [ ! -L "${c%/}" ] || continue
    mkdir -p "$c$NODE_CGROUP"
    if [ -f "${c}cpuset.cpus" ]; then
      cat "${c}cpuset.cpus" >"$c$NODE_CGROUP/cpuset.cpus"
      cat "${c}cpuset.mems" >"$c$NODE_CGROUP/cpuset.mems"
    fi
  done
}

# Our images, built by hack/images.sh into Docker, handed to the node's containerd.
node_images() {
  local image
  if ! docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
    local ctx; ctx=$(mktemp -d)
    cp "$(bin_dir pause "$PAUSE_VERSION-k8s$K8S_VERSION")/pause" "$ctx/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$PAUSE_IMAGE" "$ctx" >/dev/null 2>&1 || die "building $PAUSE_IMAGE failed"
    rm -rf "$ctx"
  fi
  local images=("$PAUSE_IMAGE" "paraflow/worker:$PROJECT_VERSION" "paraflow/operator:$PROJECT_VERSION")
  for image in "${images[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || die "image $image is missing: run hack/images.sh"
  done
  docker save "${images[@]}" | ctr images import - >/dev/null
  log "imported into the node: ${images[*]}"
}

node_up() {
  node_containerd_config
  node_kubelet_config
  start containerd -- /usr/bin/containerd --config "$NODE_DIR/containerd/config.toml"
  wait_for containerd 30 ctr version
  node_images
  node_cgroups
  start kubelet -- "$K8S_BIN/kubelet" --config="$NODE_DIR/kubelet.yaml" \
    --kubeconfig="$(node_kubeconfig "system:node:$NODE_NAME" kubelet)" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" --root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/kubelet-pki"
  start kube-proxy -- "$K8S_BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
  wait_for "node $NODE_NAME" 120 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
}

# Stops the node and removes everything it put outside $STATE_DIR. Pods go through the CRI,
# so their network namespaces and veths are torn down by the CNI plugin, not left behind.
node_down() {
  stop kubelet
  if alive containerd; then
    crictl rmp --all --force >/dev/null 2>&1 || true
  fi
  stop kube-proxy
  [ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  stop containerd
  # runc shims outlive containerd by design; ours name our socket on their command line.
  pkill -KILL -f -- "-address $CONTAINERD_SOCK" 2>/dev/null || true
  awk -v dir="$NODE_DIR/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  local c
  for c in /sys/fs/cgroup/*/"$NODE_CGROUP"; do
    [ -d "$c" ] || continue
    find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  iptables -D "${FORWARD_RULE[@]}" 2>/dev/null || true
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
}
