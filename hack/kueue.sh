#!/usr/bin/env bash
# Kueue on the cluster KUBECONFIG points at (kind in make test), installed as its users install it:
# its own manifests (the module's config/default, rendered by kubectl's kustomize: CRDs, RBAC,
# webhooks with their internally managed certificate), with its controller built here from the
# Go module proxy into an image of ours (no registry), and a configuration a platform team would
# write: namespaces opt in with the label paraflow.dev/kueue=managed, and there Kueue also holds
# Jobs that carry no queue name (manageJobsWithoutQueueName).
#   hack/kueue.sh image      -> paraflow/kueue:$KUEUE_VERSION in the local Docker
#   hack/kueue.sh install    -> applies it and waits until its webhook suspends a queued Job
set -euo pipefail
source "$(dirname "$0")/lib.sh"
IMAGE=paraflow/kueue:$KUEUE_VERSION
DOCKER=$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker )
PY="${PARAFLOW_VENV:-$REPO_DIR/.venv}/bin/python"

image() {
  "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 && return 0
  "$HACK_DIR/build.sh" kueue
  local ctx; ctx=$(mktemp -d)
  cp "$(bin_dir kueue "$KUEUE_VERSION")/kueue" "$ctx/manager"
  printf 'FROM scratch\nCOPY manager /manager\nUSER 65532:65532\nENTRYPOINT ["/manager"]\n' >"$ctx/Dockerfile"
  log "building $IMAGE"
  "$DOCKER" build -q --network none -t "$IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# Kueue's manifests with our image and configuration.
manifests() {
  local module; module=$(cd /tmp && go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  kubectl kustomize "$module/config/default" | IMAGE=$IMAGE "$PY" -c '
import os, sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for doc in docs:
    if doc["kind"] == "Deployment":
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"]:
            container["image"], container["imagePullPolicy"] = os.environ["IMAGE"], "IfNotPresent"
            # A small cluster (one kind node on 2 cores) has room for the workloads it admits.
            container["resources"]["requests"] = {"cpu": "100m", "memory": "256Mi"}
    if doc["kind"] == "ConfigMap" and "controller_manager_config.yaml" in doc.get("data", {}):
        config = yaml.safe_load(doc["data"]["controller_manager_config.yaml"])
        config["manageJobsWithoutQueueName"] = True
        config["managedJobsNamespaceSelector"] = {"matchLabels": {"paraflow.dev/kueue": "managed"}}
        config["integrations"] = {"frameworks": ["batch/job"]}
        doc["data"]["controller_manager_config.yaml"] = yaml.safe_dump(config)
yaml.safe_dump_all(docs, sys.stdout)
'
}

# Whether Kueue's webhook suspends a Job created (dry run) in a namespace that opted in.
suspends() {
  kubectl -n paraflow-kueue-probe create job probe --image=x --dry-run=server -o json -- true 2>/dev/null |
    "$PY" -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["spec"].get("suspend") else 1)'
}

install() {
  log "installing Kueue $KUEUE_VERSION"
  manifests | kubectl apply --server-side -f - >/dev/null
  kubectl -n kueue-system rollout status deploy/kueue-controller-manager --timeout=240s >/dev/null
  kubectl create namespace paraflow-kueue-probe --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label namespace paraflow-kueue-probe paraflow.dev/kueue=managed --overwrite >/dev/null
  # Ready only once its webhook (and the certificate it makes for it) answers.
  for _ in $(seq 120); do
    if suspends; then
      kubectl delete namespace paraflow-kueue-probe --wait=false >/dev/null
      log "Kueue $KUEUE_VERSION is admitting Jobs"
      return 0
    fi
    sleep 2
  done
  kubectl -n kueue-system logs deploy/kueue-controller-manager --tail=30 >&2 || true
  die "Kueue's webhook did not start suspending Jobs within 4 minutes"
}

case ${1:-} in
  image) image ;;
  install) install ;;
  *) die "usage: hack/kueue.sh image|install" ;;
esac
