#!/usr/bin/env bash
# The same e2e suite on kind, with our images in real pods (make e2e-kind).
#   hack/e2e-kind.sh          create the cluster, load the images, install the chart, run the tests
#   KEEP=1 hack/e2e-kind.sh   keep the kind cluster afterwards
# Needs `kind` and a Docker engine (hack/docker.sh up). MinIO runs on this host, bound to the kind
# network's gateway address, so pods and the tests reach it at the same URL.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"
CLUSTER=${PARAFLOW_KIND_CLUSTER:-paraflow-e2e}
command -v kind >/dev/null || die "kind is not on PATH: go install sigs.k8s.io/kind@latest"

"$HACK_DIR/build.sh" minio helm
"$HACK_DIR/images.sh"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
[ "${KEEP:-0}" = 1 ] || trap 'kind delete cluster --name "$CLUSTER"; kill $(jobs -p) 2>/dev/null || true' EXIT
kind load docker-image --name "$CLUSTER" "paraflow/operator:$PROJECT_VERSION" "paraflow/worker:$PROJECT_VERSION"
export KUBECONFIG=$STATE_DIR/kind.kubeconfig
mkdir -p "$STATE_DIR" && kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"

gateway=$(docker network inspect kind -f '{{(index .IPAM.Config 0).Gateway}}')
minio=$(bin_dir minio "$MINIO_VERSION")/minio
export PARAFLOW_TEST_S3_ACCESS_KEY=paraflow PARAFLOW_TEST_S3_SECRET_KEY=paraflow-kind-secret
for port in 19000 19100; do
  MINIO_ROOT_USER=$PARAFLOW_TEST_S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$PARAFLOW_TEST_S3_SECRET_KEY \
    "$minio" server "$STATE_DIR/kind-minio-$port" --address "$gateway:$port" --quiet &
done
export PARAFLOW_TEST_S3_ENDPOINT=http://$gateway:19000 PARAFLOW_TEST_S3_ENDPOINT_2=http://$gateway:19100
export PATH=$(bin_dir helm "$HELM_KEY"):$PATH PARAFLOW_TEST_EXTERNAL=1
"$HACK_DIR/test.sh"
