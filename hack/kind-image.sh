#!/usr/bin/env bash
# A kind node image made with no registry: `kind build node-image` pulls every image it does not
# build, so this script assembles the same image from parts built here.
#   hack/kind-image.sh            build it (once; cached by recipe) and print its name
#   hack/kind-image.sh --name     print the name only
# Engine: docker, or podman with KIND_EXPERIMENTAL_PROVIDER=podman (kind's own switch); the image
# lands in the store of the engine kind will run it with. Nothing here runs a container: the
# root filesystem is made by debootstrap, the images kubeadm deploys are preloaded by the node's
# own containerd binary run on this host against the node's /var/lib/containerd, and the result
# is imported with `<engine> import`.
#
# Inside, following kind's base image (images/base of sigs.k8s.io/kind@$KIND_VERSION, whose files
# are copied in): Debian bookworm with systemd, Debian's containerd, runc and CNI plugins; crictl,
# kubeadm, kubelet and kubectl from our builds; and, preloaded, the images kubeadm v$K8S_VERSION
# lists: kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (our Kubernetes build),
# etcd and CoreDNS (`go install`, at the versions kubeadm names) and pause (compiled from the
# Kubernetes source). Not kind's kindnetd (its module is not on the Go proxy): a bridge CNI
# configuration instead (hack/kind/default-cni.yaml says why and what it limits).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ENGINE=${KIND_EXPERIMENTAL_PROVIDER:-docker}
SUITE=bookworm
NODE_PACKAGES=systemd,systemd-sysv,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins
# kube-proxy shells out to iptables (and conntrack): its image is a small Debian root, as upstream's.
NET_PACKAGES=iptables,nftables,conntrack,kmod

# Any change to the recipe, its files or a pinned version names a new image.
recipe=$(cat "$0" "$HACK_DIR"/kind/* "$HACK_DIR/versions.env" | sha256sum | cut -c1-10)
# "localhost/": kind's podman provider prefixes docker.io/ to any name without a registry, then pulls.
IMAGE=localhost/paraflow/kind-node:v$K8S_VERSION-$recipe
[ "${1:-}" = --name ] && { echo "$IMAGE"; exit 0; }

if "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1; then
  log "kind node image $IMAGE is built ($ENGINE)"
  echo "$IMAGE"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "building the kind node image needs root (debootstrap, file ownership in the image)"
"$HACK_DIR/build.sh" kind-node
k8s=$(bin_dir kubernetes "$K8S_VERSION")
kubeadm=$(bin_dir kubeadm "$K8S_VERSION")/kubeadm

# The images kubeadm will deploy, by the exact names it will look for.
listed=$("$kubeadm" config images list --kubernetes-version "v$K8S_VERSION")
mapfile -t wanted <<<"$listed"
image_named() { # component -> the name kubeadm wants for it
  local i; for i in "${wanted[@]}"; do case $i in */"$1":*) echo "$i"; return ;; esac; done
  die "kubeadm v$K8S_VERSION lists no $1 image: ${wanted[*]}"
}
check_pin() { # component pinned-tag variable
  local want; want=$(image_named "$1") || exit 1; want=${want##*:}
  [ "$want" = "$2" ] || die "kubeadm v$K8S_VERSION deploys $1 $want but hack/versions.env pins $3 for $2: make them agree"
}
check_pin etcd "$KIND_ETCD_VERSION-0" KIND_ETCD_VERSION
check_pin coredns "$KIND_COREDNS_VERSION" KIND_COREDNS_VERSION

work=$(mktemp -d)
containerd_pid=
cleanup() {
  [ -z "$containerd_pid" ] || kill "$containerd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A debootstrap root, unpacked into a directory; the tarball is cached by its package list.
rootfs() { # packages dir
  local tarball dir=$2
  tarball=$CACHE_DIR/kind/rootfs-$SUITE-$(echo "$1" | sha256sum | cut -c1-10).tar
  if [ ! -f "$tarball" ]; then
    mkdir -p "$CACHE_DIR/kind"
    debootstrap_minbase "$SUITE" "$1" "$work/debootstrap"
    tar --numeric-owner --xattrs -C "$work/debootstrap" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$work/debootstrap"
  fi
  mkdir -p "$dir" && tar --numeric-owner --xattrs -C "$dir" -xf "$tarball"
}

# --- the images kubeadm deploys, built FROM scratch (or the small Debian root) with no network ---
image_from() { # name base file-in-image... : builds `name` with each binary at its path
  local name=$1 base=$2; shift 2
  local ctx; ctx=$(mktemp -d -p "$work")
  { echo "FROM $base"; echo "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"; } >"$ctx/Dockerfile"
  local entry
  for entry in "$@"; do # source=destination
    mkdir -p "$ctx/files$(dirname "${entry#*=}")"
    cp "${entry%%=*}" "$ctx/files${entry#*=}"
    echo "COPY files${entry#*=} ${entry#*=}" >>"$ctx/Dockerfile"
  done
  [ -z "${ENTRYPOINT:-}" ] || echo "ENTRYPOINT [\"$ENTRYPOINT\"]" >>"$ctx/Dockerfile"
  "$ENGINE" build -q --network none -t "$name" "$ctx" >/dev/null
}

log "building the images kubeadm v$K8S_VERSION deploys"
net_base=localhost/paraflow/kind-net-root:$SUITE
if ! "$ENGINE" image inspect "$net_base" >/dev/null 2>&1; then
  rootfs "$NET_PACKAGES" "$work/net"
  tar --numeric-owner -C "$work/net" -c . | "$ENGINE" import - "$net_base" >/dev/null
  rm -rf "$work/net"
fi
declare -A named
for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause; do
  named[$c]=$(image_named "$c") || exit 1
done
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  image_from "${named[$c]}" scratch "$k8s/$c=/usr/local/bin/$c"
done
image_from "${named[kube-proxy]}" "$net_base" "$k8s/kube-proxy=/usr/local/bin/kube-proxy"
image_from "${named[etcd]}" scratch "$(bin_dir etcd "$KIND_ETCD_VERSION")/etcd=/usr/local/bin/etcd"
ENTRYPOINT=/coredns image_from "${named[coredns]}" scratch "$(bin_dir coredns "$KIND_COREDNS_VERSION")/coredns=/coredns"
pause=$(bin_dir pause "$PAUSE_VERSION-k8s$K8S_VERSION")/pause
ENTRYPOINT=/pause image_from "${named[pause]}" scratch "$pause=/pause"
# kind's containerd configuration pins the sandbox image at pause:3.10.
ENTRYPOINT=/pause image_from registry.k8s.io/pause:3.10 scratch "$pause=/pause"
images=("${wanted[@]}" registry.k8s.io/pause:3.10)

# --- the node's root filesystem, laid out as kind's base image ---
log "assembling the node's root filesystem"
root=$work/node
rootfs "$NODE_PACKAGES" "$root"
kind_src=$(cd "$work" && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
cp -r "$kind_src/images/base/files/." "$root/"
chmod -R u+w "$root/kind" "$root/etc" "$root/usr/local/bin" # module-cache files are read-only
chmod 0755 "$root"/usr/local/bin/* "$root/kind" "$root/kind/bin" "$root"/kind/bin/*
# kind's units start containerd from /usr/local/bin; Debian's is in /usr/bin.
for b in containerd ctr containerd-shim-runc-v2; do ln -sf "/usr/bin/$b" "$root/usr/local/bin/$b"; done
install -m 0755 "$(bin_dir crictl "$CRICTL_VERSION")/crictl" "$root/usr/local/bin/crictl"
for b in kubeadm kubelet kubectl; do
  case $b in kubeadm) src=$kubeadm ;; *) src=$k8s/$b ;; esac
  install -m 0755 "$src" "$root/usr/bin/$b"
done
mkdir -p "$root/opt/cni/bin" "$root/etc/cni/net.d" "$root/kind/manifests" "$root/etc/kubernetes/manifests"
cp -a "$root/usr/lib/cni/." "$root/opt/cni/bin/"
install -m 0644 "$HACK_DIR/kind/10-paraflow-bridge.conflist" "$root/etc/cni/net.d/"
install -m 0644 "$HACK_DIR/kind/default-cni.yaml" "$HACK_DIR/kind/default-storage.yaml" "$root/kind/manifests/"
printf 'v%s' "$K8S_VERSION" >"$root/kind/version"
# The OCI spec containerd starts pods from, with kind's hook that gives each node its own
# product_uuid, and no rlimits (containerd's defaults exceed what some hosts allow).
"$root/usr/bin/ctr" oci spec |
  jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {"path": "/kind/bin/mount-product-files.sh"} | del(.process.rlimits)' \
    >"$root/etc/containerd/cri-base.json"
find "$root/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
  "$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
  "$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$root/etc/systemd/journald.conf"
ln -sf /usr/lib/systemd/systemd "$root/sbin/init"
chroot "$root" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$root" systemctl mask systemd-binfmt.service >/dev/null 2>&1

# --- preload: the node's containerd, run here on the node's store, imports every image ---
log "preloading ${#images[@]} images into the node's containerd"
sock=$work/containerd.sock
cat >"$work/containerd.toml" <<TOML
version = 2
root = "$root/var/lib/containerd"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/opt"
TOML
"$root/usr/bin/containerd" --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 60); do [ -S "$sock" ] && break; sleep 0.5; done
[ -S "$sock" ] || { tail -20 "$work/containerd.log"; die "the node's containerd did not start"; }
for i in "${images[@]}"; do
  "$ENGINE" save "$i" | "$root/usr/bin/ctr" --address "$sock" -n k8s.io images import --no-unpack --all-platforms - >/dev/null
done
"$root/usr/bin/ctr" --address "$sock" -n k8s.io images ls -q | sort >"$work/loaded"
for i in "${images[@]}"; do grep -qx "$i" "$work/loaded" || die "image $i missing from the node's containerd"; done
kill "$containerd_pid"; wait "$containerd_pid" 2>/dev/null || true; containerd_pid=

log "importing $IMAGE into $ENGINE"
tar --numeric-owner --xattrs -C "$root" -c . | "$ENGINE" import \
  --change 'ENV container=docker' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$IMAGE" >/dev/null
echo "$IMAGE"
