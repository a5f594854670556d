"""Replication as part of a workflow, on the real cluster: pipelined per partition to a bucket on
the same server and one on another server; and one run-wide copy with deleteSync."""

from __future__ import annotations

import io

import pytest
from kubernetes import client
from minio import Minio

from paraflow import constants as c
from paraflow.reasons import ConditionType
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import condition, create, events, upload_inputs, wait_event, wait_phase, workflow

pytestmark = pytest.mark.cluster


def keys(s3: Minio, bucket: str, prefix: str = "") -> list[str]:
    return sorted(o.object_name or "" for o in s3.list_objects(bucket, prefix=prefix, recursive=True))


def test_per_partition_replication_to_same_and_other_server(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    s3_second: Minio,
    namespace: str,
    bucket: str,
    bucket_second: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 12)  # 4 partitions
    archive = f"{bucket}-archive"
    s3.make_bucket(archive)
    body = workflow("replicated", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=2)
    body["spec"]["replication"] = {
        "destinations": [
            {"name": "archive", "bucket": archive, "prefix": "copy/"},
            {
                "name": "dev",
                "bucket": bucket_second,
                "storage": {"endpoint": test_env["PARAFLOW_TEST_S3_ENDPOINT_2"], "credentialsSecret": "minio-creds"},
            },
        ],
        "verify": "fullRead",
    }
    uid = create(custom, namespace, body)["metadata"]["uid"]
    done = wait_phase(custom, namespace, "replicated", {"Succeeded", "Failed"}, 240)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["replication"]["objects"] == 8  # 4 outputs x 2 destinations
    assert status["replication"]["replicatedIndexes"] == "0-3"
    assert status["replication"]["failed"] == 0
    assert condition(done, ConditionType.REPLICATED)["status"] == "True"
    expected = [f"p{i}/checksums-s0.txt" for i in range(4)]
    assert keys(s3, archive) == [f"copy/{k}" for k in expected]
    assert keys(s3_second, bucket_second) == expected
    for i in range(4):
        source = s3.get_object(bucket, f"output/{uid}/p{i}/a1/checksums-s0.txt").read()
        assert s3_second.get_object(bucket_second, f"p{i}/checksums-s0.txt").read() == source
    for k in keys(s3, archive):
        s3.remove_object(archive, k)
    s3.remove_bucket(archive)


def test_delete_sync_removes_only_replicas_this_workflow_made_whose_output_left_the_run(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    s3_second: Minio,
    namespace: str,
    bucket: str,
    bucket_second: str,
    test_env: dict[str, str],
) -> None:
    """A day's workflow mirrored to `daily/`, then created again over fewer inputs: the replica of
    the partition that no longer exists goes (and is named), a user's object under the same
    prefix and one elsewhere stay."""
    s3_second.put_object(bucket_second, "daily/p7/notes.txt", io.BytesIO(b"mine"), 4)
    s3_second.put_object(bucket_second, "elsewhere/keep.txt", io.BytesIO(b"mine"), 4)
    body = workflow("synced", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    body["spec"]["replication"] = {
        "mode": "afterAll",
        "deleteSync": True,
        "shards": 2,
        "destinations": [
            {
                "name": "dev",
                "bucket": bucket_second,
                "prefix": "daily/",
                "storage": {"endpoint": test_env["PARAFLOW_TEST_S3_ENDPOINT_2"], "credentialsSecret": "minio-creds"},
            },
        ],
    }
    upload_inputs(s3, bucket, 9)  # 3 partitions
    create(custom, namespace, body)
    first = wait_phase(custom, namespace, "synced", {"Succeeded", "Failed"}, 240)
    assert first["status"]["phase"] == "Succeeded", first["status"]
    assert first["status"]["replication"]["deleted"] == 0  # nothing of ours was there yet

    custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "synced")
    wait_for(
        lambda: not custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL)["items"], 60, "gone"
    )
    for i in range(6, 9):
        s3.remove_object(bucket, f"input/{i:05d}.log")  # now 2 partitions
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "synced", {"Succeeded", "Failed"}, 240)

    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert keys(s3_second, bucket_second) == [
        "daily/p0/checksums-s0.txt",
        "daily/p1/checksums-s0.txt",
        "daily/p7/notes.txt",
        "elsewhere/keep.txt",
    ]
    assert done["status"]["replication"]["deleted"] == 1
    wait_event(core, namespace, "synced", "Normal", "ReplicasDeleted")
    deleted = [m for _, r, m in events(core, namespace, "synced") if r == "ReplicasDeleted"]
    assert any("dev:'daily/p2/checksums-s0.txt'" in m for m in deleted), deleted
