#!/usr/bin/env bash
# The main job: on a fresh machine, build and start the local cluster, run the operator, load a
# day of web-server logs into MinIO, apply the daily-logs workflow, watch it to the end, and
# print the summary its reduce step wrote and where everything lives.
#   hack/demo.sh            (PARAFLOW_DEMO_FILES=2000 log files by default)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_DIR"
started=$SECONDS
NS=paraflow-demo
FILES=${PARAFLOW_DEMO_FILES:-2000}

"$HACK_DIR/build.sh" all
# This checkout's own virtualenv: a cluster another checkout started skips `cluster.sh up`.
"$HACK_DIR/python.sh"
"$HACK_DIR/cluster.sh" status >/dev/null 2>&1 || "$HACK_DIR/cluster.sh" up
eval "$("$HACK_DIR/cluster.sh" env)"
"$HACK_DIR/cluster.sh" status | grep -q "^operator: running" || "$HACK_DIR/cluster.sh" operator
PY="${PARAFLOW_VENV:-$REPO_DIR/.venv}/bin"

log "loading $FILES log files into s3://raw-logs/2026/11/24/"
export PARAFLOW_S3_ACCESS_KEY=$PARAFLOW_TEST_S3_ACCESS_KEY PARAFLOW_S3_SECRET_KEY=$PARAFLOW_TEST_S3_SECRET_KEY
export PARAFLOW_S3_ENDPOINT=$PARAFLOW_TEST_S3_ENDPOINT
"$PY/python" examples/daily-logs/generate.py --endpoint "$PARAFLOW_S3_ENDPOINT" --files "$FILES"
"$PY/python" - <<PYEOF
from paraflow_worker.storage import client_from_env
c = client_from_env()
for b in ("processed", "processed-archive"):
    c.bucket_exists(b) or c.make_bucket(b)
PYEOF

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NS" create secret generic minio-creds --from-literal=accessKey="$PARAFLOW_S3_ACCESS_KEY" \
  --from-literal=secretKey="$PARAFLOW_S3_SECRET_KEY" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NS" delete pwf daily-logs --ignore-not-found --wait=true >/dev/null
workflow=$(mktemp --suffix=.yaml)
sed "s|http://127.0.0.1:19000|$PARAFLOW_S3_ENDPOINT|" examples/daily-logs/workflow.yaml >"$workflow"

log "submitting the workflow and watching it (kubectl -n $NS get pwf daily-logs shows the same)"
"$PY/paraflow" submit "$workflow" -n "$NS" --watch
rm -f "$workflow"
kubectl -n "$NS" get pwf daily-logs
"$PY/paraflow" status daily-logs -n "$NS"
manifest=$(kubectl -n "$NS" get pwf daily-logs -o jsonpath='{.status.manifest}')

log "the day's summary, written by the reduce step in the cluster (paraflow reduce-output daily-logs summary.json -n $NS):"
"$PY/paraflow" reduce-output daily-logs summary.json -n "$NS"
log "result manifest: $manifest"
log "per-shard outputs: $(kubectl -n "$NS" get pwf daily-logs -o jsonpath='{.status.outputPrefix}')p<partition>/a<attempt>/ (the manifest names the winners)"
log "replicas: s3://processed-archive/daily-logs/2026-11-24/{p<partition>,reduce}/ ($(kubectl -n "$NS" get pwf daily-logs -o jsonpath='{.status.replication.objects} objects, {.status.replication.bytes} bytes'))"

schedule=$(mktemp --suffix=.yaml)
sed "s|http://127.0.0.1:19000|$PARAFLOW_S3_ENDPOINT|" examples/daily-logs/schedule.yaml >"$schedule"
kubectl -n "$NS" apply -f "$schedule" >/dev/null
rm -f "$schedule"
for _ in $(seq 60); do
  [ -n "$(kubectl -n "$NS" get pwfs daily-logs -o jsonpath='{.status.nextScheduleTime}')" ] && break
  sleep 0.5
done
log "the same workflow every day at 01:00 Berlin time, reading the day before (docs/schedules.md):"
kubectl -n "$NS" get pwfs daily-logs
log "the run in a browser: $PY/paraflow ui daily-logs -n $NS (docs/ui.md)"
log "demo finished in $((SECONDS - started))s; the cluster keeps running (hack/cluster.sh down stops it)"
