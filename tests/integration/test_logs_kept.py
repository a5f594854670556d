"""Logs that outlive their pods (spec.logs): the operator keeps a finished Job's pod logs in the
run's prefix before anything deletes them, bounded with the tail kept, and `paraflow logs` shows
them once the pods are gone, saying so."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from minio import Minio

from paraflow_worker import contract
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import WORKER_IMAGE, create, upload_inputs, wait_phase, workflow

pytestmark = pytest.mark.cluster

PARAFLOW = str(Path(sys.executable).with_name("paraflow"))
# Partition 1 fails for good (exit 3, non-retryable); the others write an output and succeed.
FAIL_ONE = """
import sys
from paraflow_worker import sdk
with sdk.shard() as shard:
    print(f"partition {shard.partition} attempt {shard.attempt} starts", flush=True)
    if shard.partition == 1:
        print("partition 1 gives up: exit 3", flush=True)
        sys.exit(3)
    shard.write("ok.txt", b"ok")
"""
# 50 MiB of output, then a last line, then a failure.
FLOOD = """
import sys
line = "x" * 1023 + "\\n"
for _ in range(50 * 1024):
    sys.stdout.write(line)
print("the last line", flush=True)
sys.exit(3)
"""


def failing(name: str, endpoint: str, bucket: str, script: str, **spec: Any) -> dict[str, Any]:
    body = workflow(name, endpoint, bucket, **spec)
    body["spec"]["processor"] = {
        "image": WORKER_IMAGE,
        "command": ["python", "-c", script],
        "nonRetryableExitCodes": [3],
    }
    return body


def kept(s3: Minio, bucket: str, uid: str) -> dict[str, Any]:
    """Every kept log of the run: key (below logs/) -> the object's stat."""
    prefix = contract.logs_prefix(contract.run_prefix("output/", uid))
    return {
        o.object_name[len(prefix) :]: s3.stat_object(bucket, o.object_name)
        for o in s3.list_objects(bucket, prefix=prefix, recursive=True)
    }


def read(s3: Minio, bucket: str, uid: str, key: str) -> bytes:
    response = s3.get_object(bucket, contract.logs_prefix(contract.run_prefix("output/", uid)) + key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def test_a_failed_partition_s_log_outlives_its_workflow_under_succeeded_jobs_delete_and_a_ttl(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 9)  # 3 partitions
    body = failing(
        "ttl",
        test_env["PARAFLOW_TEST_S3_ENDPOINT"],
        bucket,
        FAIL_ONE,
        succeededJobs="Delete",
        ttlSecondsAfterFinished=3,
        failureTolerance={"count": 1},
    )
    uid = create(custom, namespace, body)["metadata"]["uid"]

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object("paraflow.dev", "v1alpha1", namespace, "parallelworkflows", "ttl")
        except client.ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, 180, "the workflow to succeed within its tolerance and go at its TTL")
    logs = kept(s3, bucket, uid)
    assert [k.split("/")[0] for k in logs] == ["ttl-p1-a1"], "keep: failed (the default) keeps the failed one only"
    (key,) = logs
    assert b"partition 1 gives up: exit 3" in read(s3, bucket, uid, key)
    assert logs[key].metadata["x-amz-meta-paraflow-exit-code"] == "3"


def test_paraflow_logs_shows_the_kept_log_of_a_partition_whose_pods_were_deleted_by_hand(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 6)  # 2 partitions
    uid = create(custom, namespace, failing("byhand", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, FAIL_ONE))[
        "metadata"
    ]["uid"]
    wait_phase(custom, namespace, "byhand", {"Failed"}, 180)
    wait_for(lambda: kept(s3, bucket, uid), 60, "the failed partition's log kept")
    core.delete_collection_namespaced_pod(namespace, label_selector="job-name=byhand-p1-a1", grace_period_seconds=0)
    wait_for(
        lambda: not core.list_namespaced_pod(namespace, label_selector="job-name=byhand-p1-a1").items,
        60,
        "the pods gone",
    )
    done = subprocess.run(
        [PARAFLOW, "logs", "byhand", "-p", "1", "-n", namespace], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())  # what paraflow says goes to stderr, the log itself to stdout
    assert "the pods of partition 1 attempt 1 are gone: their logs as the operator kept them" in said
    assert "exit 3 (Error), whole" in said
    assert "partition 1 gives up: exit 3" in done.stdout


def test_a_50_mib_log_is_kept_as_its_last_lines_within_logs_max_bytes(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 3)  # 1 partition
    body = failing("flood", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, FLOOD, logs={"maxBytes": "64Ki"})
    uid = create(custom, namespace, body)["metadata"]["uid"]
    wait_phase(custom, namespace, "flood", {"Failed"}, 240)
    logs = wait_for(lambda: kept(s3, bucket, uid), 120, "the flood's log kept")
    (key,) = logs
    text = read(s3, bucket, uid, key)
    assert len(text) <= 64 * 1024 and text.endswith(b"the last line\n")
    assert text.startswith(b"x" * 1023 + b"\n"), "the kept tail starts at a whole line"
    assert int(logs[key].metadata["x-amz-meta-paraflow-total-bytes"]) >= 50 * 2**20


def test_kept_logs_are_not_found_where_none_were_asked_for(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 6)
    body = failing("quiet", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, FAIL_ONE, logs={"keep": "none"})
    uid = create(custom, namespace, body)["metadata"]["uid"]
    wait_phase(custom, namespace, "quiet", {"Failed"}, 180)
    # Kept logs land in the pass that writes Failed, just after its status: give it several passes.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert kept(s3, bucket, uid) == {}, "keep: none stores nothing"
        time.sleep(0.5)
