"""Every bad input gets a clear error at the earliest layer that can see it, and creates nothing
it should not: the CRD schema and CEL at admission, then the operator with a condition and Event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from minio import Minio

from paraflow import constants as c
from paraflow.reasons import ConditionType
from tests.operator_process import OperatorProcess
from tests.pod_templates import CONFLICTS, EVERYTHING
from tests.workflows import (
    WORKER_IMAGE,
    condition,
    create,
    get,
    patch,
    upload_inputs,
    wait_event,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.cluster

ENDPOINT = "http://127.0.0.1:19000"


def with_spec(**changes: Any) -> dict[str, Any]:
    body = workflow("bad", ENDPOINT, "some-bucket")
    body["spec"]["output"] = {"bucket": "other-bucket", "prefix": "out/"}
    for dotted, value in changes.items():
        target = body
        *path, last = dotted.split(".")
        for part in path:
            target = target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return body


DELETE = object()

ADMISSION_CASES = [
    (
        "zero-concurrency",
        {"spec.maxConcurrency": 0},
        "spec.maxConcurrency: Invalid value: 0: spec.maxConcurrency in body should be greater than or equal to 1",
    ),
    (
        "both-partitioners",
        {"spec.partitioner": {"builtin": {}, "container": {"image": "x:1"}}},
        "set exactly one of partitioner.builtin and partitioner.container",
    ),
    ("no-partitioner", {"spec.partitioner": {}}, "set exactly one of partitioner.builtin and partitioner.container"),
    (
        "overlapping-output",
        {"spec.output": {"bucket": "some-bucket", "prefix": "input/sub/"}},
        "output must not overlap input",
    ),
    ("dotdot-prefix", {"spec.input.prefix": "logs/../secrets/"}, "prefix must not contain '.' or '..' segments"),
    ("leading-slash", {"spec.input.prefix": "/logs/"}, "prefix must not start with '/'"),
    ("bad-bucket", {"spec.input.bucket": "Bad_Bucket"}, "spec.input.bucket in body should match"),
    ("huge-shards", {"spec.processor.shardsPerPartition": 5000}, "should be less than or equal to 1000"),
    ("exit-code-range", {"spec.processor.nonRetryableExitCodes": [0]}, "should be greater than or equal to 1"),
    ("no-endpoint-scheme", {"spec.storage.endpoint": "minio:9000"}, "spec.storage.endpoint in body should match"),
    ("missing-processor", {"spec.processor": DELETE}, "spec.processor: Required value"),
    (
        "wrong-type",
        {"spec.maxConcurrency": "ten"},
        'spec.maxConcurrency: Invalid value: "string": spec.maxConcurrency in body must be of type integer',
    ),
    (
        "replica-overlaps-output",
        {"spec.replication": {"destinations": [{"name": "a", "bucket": "other-bucket", "prefix": "out/x/"}]}},
        "a replication destination must not overlap the output it copies",
    ),
    (
        "delete-sync-per-partition",
        {"spec.replication": {"deleteSync": True, "destinations": [{"name": "a", "bucket": "archive"}]}},
        "deleteSync needs mode afterAll",
    ),
    (
        "duplicate-destination-names",
        {"spec.replication": {"destinations": [{"name": "a", "bucket": "b-one"}, {"name": "a", "bucket": "b-two"}]}},
        "destination names must be unique",
    ),
    (
        "reduce-with-per-partition-copy",
        {
            "spec.reduce": {"image": "x:1"},
            "spec.replication": {"destinations": [{"name": "a", "bucket": "archive"}]},
        },
        "with a reduce step, replication.mode must be afterAll",
    ),
    ("bad-quantity", {"spec.partitioner.builtin.maxBytesPerPartition": "lots"}, None),
]


@pytest.mark.parametrize(("case", "changes", "message"), ADMISSION_CASES, ids=[c[0] for c in ADMISSION_CASES])
def test_the_apiserver_rejects_invalid_specs_with_the_field_and_reason(
    crd: None, custom: client.CustomObjectsApi, namespace: str, case: str, changes: dict[str, Any], message: str | None
) -> None:
    body = with_spec(**changes)
    if message is None:
        created = create(custom, namespace, body)  # admitted: the operator must catch it
        assert created["metadata"]["name"] == "bad"
        return
    with pytest.raises(client.ApiException) as raised:
        create(custom, namespace, body)
    assert raised.value.status == 422
    assert message in json.loads(raised.value.body)["message"]


@pytest.mark.parametrize(("case", "step", "fields", "message"), CONFLICTS, ids=[c[0] for c in CONFLICTS])
def test_the_apiserver_refuses_a_pod_template_that_changes_what_paraflow_owns(
    crd: None, custom: client.CustomObjectsApi, namespace: str, case: str, step: str, fields: dict, message: str
) -> None:
    body = with_spec(**{"spec.reduce": {"image": "python:3.11"}})
    body["spec"][step].update(fields)
    with pytest.raises(client.ApiException) as raised:
        create(custom, namespace, body)
    assert raised.value.status == 422
    assert message in json.loads(raised.value.body)["message"]


def test_a_template_with_every_kind_of_pod_setting_is_admitted_and_kept_whole(
    crd: None, custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = with_spec(**{"spec.suspend": True, "spec.processor.podTemplate": EVERYTHING})
    assert create(custom, namespace, body)["spec"]["processor"]["podTemplate"] == EVERYTHING, "nothing pruned"


def test_a_name_longer_than_40_characters_is_rejected(
    crd: None, custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = with_spec()
    body["metadata"]["name"] = "n" * 41
    with pytest.raises(client.ApiException) as raised:
        create(custom, namespace, body)
    assert "metadata.name must be at most 40 characters" in json.loads(raised.value.body)["message"]


def test_processor_and_partitioner_are_immutable(crd: None, custom: client.CustomObjectsApi, namespace: str) -> None:
    body = with_spec(**{"spec.suspend": True})
    create(custom, namespace, body)
    with pytest.raises(client.ApiException) as raised:
        patch(custom, namespace, "bad", {"spec": {"processor": {"image": "other:2"}}})
    assert "processor is immutable after creation" in json.loads(raised.value.body)["message"]
    patch(custom, namespace, "bad", {"spec": {"maxConcurrency": 7}})  # what is not immutable is fine
    assert get(custom, namespace, "bad")["spec"]["maxConcurrency"] == 7


def no_jobs(batch: client.BatchV1Api, namespace: str) -> bool:
    return not batch.list_namespaced_job(namespace).items


def wait_condition(custom: client.CustomObjectsApi, ns: str, name: str, type_: str, timeout: float = 60) -> dict:
    from tests.support import wait_for

    return wait_for(lambda: condition(get(custom, ns, name), type_), timeout, f"condition {type_} on {name}")


def test_an_unparseable_quantity_fails_the_workflow_with_the_field(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    create(custom, namespace, with_spec(**{"spec.partitioner.builtin.maxBytesPerPartition": "lots"}))
    failed = wait_condition(custom, namespace, "bad", ConditionType.FAILED)
    assert failed["reason"] == "InvalidSpec"
    assert "spec.partitioner.builtin.maxBytesPerPartition" in failed["message"]
    assert "'lots' is not a byte quantity" in failed["message"]
    wait_event(core, namespace, "bad", "Warning", "InvalidSpec")
    assert no_jobs(batch, namespace)


def test_a_pod_template_the_apiserver_refuses_in_a_job_fails_the_run_naming_the_field(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    """A mount of a volume the template does not define passes the CRD's schema (it cannot see
    that), but not the Job's validation: the run fails with the apiserver's words, not silently."""
    upload_inputs(s3, bucket, 3)
    body = workflow("refusedjob", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    mount = {"name": "cache", "mountPath": "/cache"}
    body["spec"]["partitioner"]["podTemplate"] = {
        "spec": {"containers": [{"name": "partitioner", "volumeMounts": [mount]}]}
    }
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "refusedjob", {"Failed"}, 60)
    failed = condition(done, ConditionType.FAILED)
    assert failed is not None and failed["reason"] == "JobRefused"
    assert "volumeMounts[0].name" in failed["message"] and "cache" in failed["message"]


def test_a_missing_secret_blocks_the_workflow_until_it_exists(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 3)
    body = workflow("nosecret", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    body["spec"]["storage"]["credentialsSecret"] = "not-there"
    create(custom, namespace, body)
    blocked = wait_condition(custom, namespace, "nosecret", ConditionType.BLOCKED)
    assert blocked["reason"] == "SecretNotFound"
    assert 'Secret "not-there" not found' in blocked["message"]
    wait_event(core, namespace, "nosecret", "Warning", "SecretNotFound")
    assert no_jobs(batch, namespace)
    # Creating the Secret unblocks it: nothing was lost, the run goes on.
    secret = core.read_namespaced_secret("minio-creds", namespace)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "not-there"}, "data": secret.data})
    done = wait_phase(custom, namespace, "nosecret", {"Succeeded"}, 120)
    assert condition(done, ConditionType.BLOCKED) is None


def test_a_secret_without_the_keys_names_the_missing_key(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    core.create_namespaced_secret(namespace, {"metadata": {"name": "half"}, "stringData": {"accessKey": "x"}})
    body = workflow("halfsecret", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    body["spec"]["storage"]["credentialsSecret"] = "half"
    create(custom, namespace, body)
    blocked = wait_condition(custom, namespace, "halfsecret", ConditionType.BLOCKED)
    assert 'Secret "half" has no key(s) secretKey' in blocked["message"]


@pytest.mark.parametrize(
    ("endpoint_kind", "message"),
    [
        ("unreachable", "cannot reach MinIO at http://127.0.0.1:1"),
        ("missing-bucket", "bucket 'no-such-bucket-here' does not exist"),
    ],
)
def test_storage_problems_block_before_anything_starts(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
    endpoint_kind: str,
    message: str,
) -> None:
    if endpoint_kind == "unreachable":
        body = workflow("nostore", "http://127.0.0.1:1", bucket)
    else:
        body = workflow("nostore", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
        body["spec"]["input"]["bucket"] = "no-such-bucket-here"
    create(custom, namespace, body)
    blocked = wait_condition(custom, namespace, "nostore", ConditionType.BLOCKED)
    assert blocked["reason"] == "StorageUnavailable"
    assert message in blocked["message"]
    assert no_jobs(batch, namespace)


PARTITIONER_WRITES = """
import io, os
from paraflow_worker.storage import client_from_env
doc = os.environ["DOC"].encode()
client_from_env().put_object(os.environ["PARAFLOW_RUN_BUCKET"], os.environ["PARAFLOW_RUN_PREFIX"] + "plan.json",
                             io.BytesIO(doc), len(doc))
"""


@pytest.mark.parametrize(
    ("doc", "reason", "message"),
    [
        ('{"version": 1, "partitionCount": "many", "itemCount": 0, "totalBytes": 0}', "InvalidPlan", "partitionCount"),
        ('{"version": 7, "partitionCount": 1, "itemCount": 1, "totalBytes": 1}', "InvalidPlan", "version"),
        ('{"version": 1, "partitionCount": 100001, "itemCount": 1, "totalBytes": 1}', "InvalidPlan", "partitionCount"),
        ("not json", "InvalidPlan", "is not a valid plan"),
        (None, "PlanMissing", "wrote no plan"),
        (
            '{"version": 1, "partitionCount": 0, "itemCount": 0, "totalBytes": 0}',
            "NoPartitions",
            "found no input items",
        ),
    ],
)
def test_a_bad_plan_from_a_custom_partitioner_fails_the_workflow_with_the_reason(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
    doc: str | None,
    reason: str,
    message: str,
) -> None:
    body = workflow("badplan", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    script = PARTITIONER_WRITES if doc is not None else "pass"
    body["spec"]["partitioner"] = {
        "container": {
            "image": WORKER_IMAGE,
            "command": ["python", "-c", script],
            "env": [{"name": "DOC", "value": doc or ""}],
        }
    }
    create(custom, namespace, body)
    failed = wait_phase(custom, namespace, "badplan", {"Failed"}, 120)
    assert condition(failed, ConditionType.FAILED)["reason"] == reason
    assert message in failed["status"]["message"]
    wait_event(core, namespace, "badplan", "Warning", "Failed")
    roles = {j.metadata.labels[c.LABEL_ROLE] for j in batch.list_namespaced_job(namespace).items}
    assert roles == {c.ROLE_PARTITIONER}, "no partition Job may start from a bad plan"
