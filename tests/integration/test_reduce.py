"""The reduce step on the cluster: with odd output names in a namespace enforcing Pod Security
``restricted``, its outputs replicated byte-exact to another server; and when it goes wrong: a
reduce that fails for good fails the run with its reason and keeps the map's manifest,
`paraflow logs --reduce` shows why, a redrive runs it again as a new attempt, and a reduce image
that cannot be pulled is named in PodsBlocked and ends at the step's deadline."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from minio import Minio

from paraflow.reasons import ConditionType
from tests.e2e.test_cli import cli
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import WORKER_IMAGE, condition, create, get, upload_inputs, wait_phase, workflow

FAILING = ["python", "-c", "import sys; print('no summary today', file=sys.stderr); sys.exit(4)"]


def reduce_workflow(name: str, endpoint: str, bucket: str, reduce: dict[str, Any]) -> dict[str, Any]:
    return workflow(name, endpoint, bucket, reduce=reduce, retry={"maxAttempts": 1})


def assert_map_kept(s3: Minio, done: dict[str, Any]) -> None:
    bucket, _, key = done["status"]["manifest"].removeprefix("s3://").partition("/")
    assert s3.stat_object(bucket, key).size, "the map's manifest is kept when the reduce step fails"


@pytest.mark.cluster
def test_a_failing_reduce_step_fails_the_run_and_a_redrive_runs_it_again(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 5)
    body = reduce_workflow(
        "red-fail", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, {"image": WORKER_IMAGE, "command": FAILING}
    )
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "red-fail", {"Succeeded", "Failed"}, 180)
    failed = condition(done, ConditionType.FAILED)
    assert failed is not None and failed["reason"] == "ReduceFailed", done["status"]
    assert "red-fail-reduce-a1" in failed["message"] and "a redrive runs the reduce step again" in failed["message"]
    assert done["status"]["partitions"]["succeeded"] == 2 and done["status"]["reduce"]["phase"] == "Failed"
    assert_map_kept(s3, done)
    assert "no summary today" in cli("logs", "red-fail", "--reduce", "-n", namespace).stdout

    cli("redrive", "red-fail", "-n", namespace)
    wait_for(
        lambda: get(custom, namespace, "red-fail")["status"]["reduce"]["attempt"] == 2 or None, 60, "a second attempt"
    )
    again = wait_phase(custom, namespace, "red-fail", {"Failed"}, 180)
    assert again["status"]["redrive"]["count"] == 1
    jobs = {j.metadata.name for j in batch.list_namespaced_job(namespace).items}
    assert {"red-fail-reduce-a1", "red-fail-reduce-a2"} <= jobs
    assert not any(n.startswith("red-fail-p") and n.endswith("-a2") for n in jobs), "the map is not run again"


@pytest.mark.runtime  # the kubelet's own image-pull reasons, not the pod runner's imitation
def test_a_reduce_image_that_cannot_be_pulled_is_named_and_fails_the_run_at_its_deadline(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 3)
    missing = {"image": "paraflow/no-such-reducer:0.0.0", "activeDeadlineSeconds": 25}
    create(custom, namespace, reduce_workflow("red-img", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, missing))
    blocked = wait_for(
        lambda: condition(get(custom, namespace, "red-img"), ConditionType.PODS_BLOCKED), 120, "PodsBlocked"
    )
    assert blocked["reason"] in {"ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff"}, blocked
    assert "red-img-reduce-a1" in blocked["message"]
    now = get(custom, namespace, "red-img")["status"]
    assert now["phase"] == "Blocked" and "red-img-reduce-a1" in now["message"], now
    done = wait_phase(custom, namespace, "red-img", {"Succeeded", "Failed"}, 120)
    failed = condition(done, ConditionType.FAILED)
    assert failed is not None and failed["reason"] == "ReduceFailed", done["status"]
    assert "DeadlineExceeded" in failed["message"]
    assert_map_kept(s3, done)


ODD_NAMES = ["sum mary é.json", "a+b%20c.txt", "dir/trailing/", "日本/語.csv"]
ODD_REDUCER = [
    "python",
    "-c",
    "from paraflow_worker import sdk\n"
    "with sdk.reduce() as run:\n"
    f"    for name in {ODD_NAMES!r}:\n"
    "        run.write(name, name.encode() * 3)\n",
]


@pytest.mark.runtime  # the worker image as non-root on a read-only root, under a real runtime
def test_a_reduce_step_with_odd_output_names_in_a_restricted_namespace_replicates_them_exactly(
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
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    upload_inputs(s3, bucket, 3)
    body = reduce_workflow(
        "red-odd", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, {"image": WORKER_IMAGE, "command": ODD_REDUCER}
    )
    second = {"endpoint": test_env["PARAFLOW_TEST_S3_ENDPOINT_2"], "credentialsSecret": "minio-creds"}
    body["spec"]["replication"] = {
        "mode": "afterAll",
        "destinations": [{"name": "far", "bucket": bucket_second, "prefix": "copy/", "storage": second}],
    }
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "red-odd", {"Succeeded", "Failed"}, 180)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert condition(done, ConditionType.PODS_BLOCKED) is None
    listed = cli("reduce-output", "red-odd", "-n", namespace).stdout
    assert all(name in listed for name in ODD_NAMES), listed
    for name in ODD_NAMES:
        assert s3_second.get_object(bucket_second, f"copy/reduce/{name}").read() == name.encode() * 3
