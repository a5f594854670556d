#!/usr/bin/env bash
# Builds (once) every binary the local test environment needs, from the Go module proxy,
# into $CACHE_DIR/bin/<name>-<version>/. Re-running builds only what is missing.
#   hack/build.sh [all|kind-node|<one binary>]...
# `kind-node` is what the offline kind node image is made of (hack/kind-image.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

have() { [ -x "$(bin_dir "$1" "$2")/$3" ]; }

# `go install pkg@version` refuses k8s.io/kubernetes (its go.mod replaces the staging modules
# with local paths), so build its mains from a throwaway wrapper module that maps each staging
# module to the matching published v0.X.Y version.
build_k8s_mains() { # cache-name main...   (each main is k8s.io/kubernetes/cmd/<main>)
  local name=$1; shift
  local out; out=$(bin_dir "$name" "$K8S_VERSION")
  local b missing=0
  for b in "$@"; do have "$name" "$K8S_VERSION" "$b" || missing=1; done
  [ $missing = 0 ] && return 0
  log "building Kubernetes v$K8S_VERSION ($*)"
  local work; work=$(mktemp -d)
  local minor=$K8S_MINOR
  local staging="0.${K8S_VERSION#*.}"
  (
    cd "$work"
    go mod init paraflow.local/k8sbin >/dev/null 2>&1
    go mod edit -go=1.26.0 -require="k8s.io/kubernetes@v$K8S_VERSION"
    local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*|\1|p' "$gomod" | while read -r m; do
      go mod edit -replace="$m=$m@v$staging"
    done
    local p static=()
    for p in "$@"; do
      go get "k8s.io/kubernetes/cmd/$p@v$K8S_VERSION" >/dev/null 2>&1 || go get "k8s.io/kubernetes/cmd/$p@v$K8S_VERSION"
      [ "$p" = kubelet ] || static+=("k8s.io/kubernetes/cmd/$p")
    done
    # Real version strings: kwok and helm choose behaviour by the server version.
    local ldf="-s -w" v
    for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf="$ldf -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
    done
    mkdir -p "$out.tmp"
    [ ${#static[@]} -eq 0 ] || CGO_ENABLED=0 go build -trimpath -ldflags "$ldf" -o "$out.tmp/" "${static[@]}"
    # The kubelet keeps cgo (as released): it runs in a kind node of the same Debian.
    case " $* " in *" kubelet "*) go build -trimpath -ldflags "$ldf" -o "$out.tmp/" k8s.io/kubernetes/cmd/kubelet ;; esac
  )
  rm -rf "$out" "$work"; mv "$out.tmp" "$out"
}

build_k8s() {
  build_k8s_mains kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy
  "$(bin_dir kubernetes "$K8S_VERSION")/kube-apiserver" --version
}

# Only the kind node image needs kubeadm: its own cache entry, so the binaries above stay cached.
build_kubeadm() { build_k8s_mains kubeadm kubeadm; }

# etcd's server module also replaces its sibling modules with paths; same wrapper trick.
build_etcd_at() { # version
  have etcd "$1" etcd && return 0
  log "building etcd v$1"
  local out work; out=$(bin_dir etcd "$1"); work=$(mktemp -d)
  (
    cd "$work"
    go mod init paraflow.local/etcdbin >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$1" "go.etcd.io/etcd/etcdctl/v3@v$1" >/dev/null
    mkdir -p "$out.tmp"
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
  )
  rm -rf "$out" "$work"; mv "$out.tmp" "$out"
}
build_etcd() { build_etcd_at "$ETCD_VERSION"; }

go_install() { # name version binary module-path@version [extra ldflags]
  have "$1" "$2" "$3" && return 0
  log "go install $4"
  local out; out=$(bin_dir "$1" "$2")
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w ${5:-}" "$4"
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_kwok() { go_install kwok "$KWOK_VERSION" kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"; }
build_minio() { go_install minio "$MINIO_VERSION" minio "github.com/minio/minio@$MINIO_VERSION"; }
build_mc() { go_install mc "$MC_VERSION" mc "github.com/minio/mc@$MC_VERSION"; }
# `go install` skips helm's Makefile ldflags: without them it reports "v3.21" and renders
# charts for Kubernetes v1.20, failing any chart with a kubeVersion constraint.
build_helm() {
  go_install helm "$HELM_KEY" helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR"
}

build_crictl() {
  go_install crictl "$CRICTL_VERSION" crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
}

# Argo's workflow-controller, a peer in bench/orchestration only. Its CRDs ship in the same module.
build_argo() {
  go_install argo "$ARGO_VERSION" workflow-controller \
    "github.com/argoproj/argo-workflows/v4/cmd/workflow-controller@$ARGO_VERSION"
}

# The pod sandbox's "pause" process, compiled from the Kubernetes release's own source: no
# registry to pull registry.k8s.io/pause from. Static, so it runs in a FROM-scratch image.
build_pause() {
  have pause "$PAUSE_VERSION-k8s$K8S_VERSION" pause && return 0
  log "compiling pause $PAUSE_VERSION from k8s.io/kubernetes@v$K8S_VERSION"
  local out src; out=$(bin_dir pause "$PAUSE_VERSION-k8s$K8S_VERSION")
  src=$(cd /tmp && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$out.tmp"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION" -o "$out.tmp/pause" "$src/build/pause/linux/pause.c"
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# Kueue's controller, for the kind tier's queue tests. Its manifests (CRDs, RBAC, webhooks) are
# the module's config/ tree, which the go install leaves in the module cache.
build_kueue() { go_install kueue "$KUEUE_VERSION" kueue "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"; }

# Prometheus, to evaluate the chart's Grafana dashboard against a scraped operator (its tests), and
# prometheus-operator's ServiceMonitor CRD (the module's own example manifests) for the chart's
# ServiceMonitor. Neither is part of the product.
build_prometheus() {
  go_install prometheus "$PROMETHEUS_VERSION" prometheus "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
  local crds; crds=$(bin_dir prometheus-operator-crds "$PROMETHEUS_OPERATOR_VERSION")
  [ -f "$crds/monitoring.coreos.com_servicemonitors.yaml" ] && return 0
  local src
  src=$(cd /tmp && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$crds"
  cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$crds/"
}

# kind and what its offline node image runs beyond our Kubernetes build (hack/kind-image.sh).
build_kind() { go_install kind "$KIND_VERSION" kind "sigs.k8s.io/kind@$KIND_VERSION"; }
build_coredns() { go_install coredns "$KIND_COREDNS_VERSION" coredns "github.com/coredns/coredns@$KIND_COREDNS_VERSION"; }

targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(all)
for t in "${targets[@]}"; do
  case $t in
    all) build_etcd; build_kwok; build_minio; build_mc; build_helm; build_k8s ;;
    kind-node) build_k8s; build_kubeadm; build_etcd_at "$KIND_ETCD_VERSION"; build_coredns; build_crictl; build_pause ;;
    k8s|kubeadm|etcd|kwok|minio|mc|helm|crictl|pause|argo|kind|coredns|kueue|prometheus) "build_$t" ;;
    *) die "unknown target '$t' (all|kind-node|k8s|kubeadm|etcd|kwok|minio|mc|helm|crictl|pause|argo|kind|coredns|kueue|prometheus)" ;;
  esac
done
