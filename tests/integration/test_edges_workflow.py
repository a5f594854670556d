"""Promises at the edges, on the real cluster and MinIO: a destination that is the output under
another endpoint name, a namespace enforcing Pod Security ``restricted``, a missing destination
bucket, and children whose pods are refused."""

from __future__ import annotations

import io

import pytest
from kubernetes import client
from minio import Minio

from paraflow import constants as c
from paraflow.reasons import ConditionType
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import condition, create, events, get, patch, upload_inputs, wait_event, wait_phase, workflow


def alias_of(endpoint: str) -> str:
    """The same server under another name: localhost for 127.0.0.1, else the URL with a '/'."""
    return endpoint.replace("127.0.0.1", "localhost") if "127.0.0.1" in endpoint else endpoint + "/"


def keys(s3: Minio, bucket: str) -> list[str]:
    return sorted(o.object_name or "" for o in s3.list_objects(bucket, recursive=True))


@pytest.mark.cluster
def test_delete_sync_to_the_output_under_an_endpoint_alias_is_refused_before_anything_runs(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    archive: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 6)
    s3.put_object(bucket, "output/earlier-run/keep.txt", io.BytesIO(b"precious"), 8)
    endpoint = test_env["PARAFLOW_TEST_S3_ENDPOINT"]
    body = workflow("aliased", endpoint, bucket)
    alias = {"endpoint": alias_of(endpoint), "credentialsSecret": "minio-creds"}
    body["spec"]["replication"] = {
        "mode": "afterAll",
        "deleteSync": True,
        "destinations": [{"name": "self", "bucket": bucket, "prefix": "output/", "storage": alias}],
    }
    create(custom, namespace, body)  # the CRD's string comparison cannot see it: the operator must

    failed = wait_phase(custom, namespace, "aliased", {"Failed", "Succeeded"}, 60)

    assert condition(failed, ConditionType.FAILED)["reason"] == "DestinationIsOutput"
    assert "is the storage holding the output prefix" in failed["status"]["message"]
    wait_event(core, namespace, "aliased", "Warning", "DestinationIsOutput")
    posted = core.list_namespaced_event(namespace, field_selector="involvedObject.name=aliased").items
    assert {e.source.component for e in posted} == {c.USER_AGENT_PRODUCT}  # `kubectl describe`: From paraflow-operator
    assert s3.get_object(bucket, "output/earlier-run/keep.txt").read() == b"precious"
    assert not [k for k in keys(s3, bucket) if k.startswith("output/") and "/p0/" in k]  # no partition ran

    # Pointed elsewhere, the same workflow is checked again and runs: nothing ran before.
    elsewhere = {"name": "self", "bucket": archive, "prefix": "output/", "storage": alias}
    patch(custom, namespace, "aliased", {"spec": {"replication": {"destinations": [elsewhere]}}})
    done = wait_phase(custom, namespace, "aliased", {"Succeeded"}, 180)
    assert done["status"]["replication"]["objects"] == 2
    assert s3.get_object(bucket, "output/earlier-run/keep.txt").read() == b"precious"


@pytest.mark.cluster
def test_a_missing_destination_bucket_blocks_the_workflow_at_preflight(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 3)
    body = workflow("nowhere", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    body["spec"]["replication"] = {"destinations": [{"name": "archive", "bucket": "no-such-bucket-here"}]}
    create(custom, namespace, body)
    blocked = wait_for(
        lambda: (o := get(custom, namespace, "nowhere")) and condition(o, ConditionType.BLOCKED) and o, 30, "Blocked"
    )
    assert (
        "replication destination 'archive': bucket 'no-such-bucket-here' does not exist"
        in (condition(blocked, ConditionType.BLOCKED)["message"])
    )
    assert blocked["status"]["phase"] == "Blocked"  # and nothing started


@pytest.fixture
def restricted(core: client.CoreV1Api, namespace: str) -> str:
    """The test namespace, enforcing Pod Security ``restricted``."""
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    return namespace


@pytest.mark.runtime  # the images run as their non-root user on a read-only root, under a real runtime
def test_in_a_restricted_namespace_every_pod_is_admitted_and_the_run_succeeds(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    restricted: str,
    bucket: str,
    archive: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 6)
    body = workflow("hardened", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    body["spec"]["replication"] = {"destinations": [{"name": "archive", "bucket": archive}]}
    create(custom, restricted, body)
    done = wait_phase(custom, restricted, "hardened", {"Succeeded", "Failed"}, 180)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert condition(done, ConditionType.PODS_BLOCKED) is None


@pytest.mark.cluster
def test_pods_refused_by_pod_security_block_the_run_saying_why_until_the_namespace_allows_them(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    restricted: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 3)
    body = workflow("rooted", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    body["spec"]["processor"]["securityContext"] = {"runAsUser": 0, "runAsNonRoot": False}
    create(custom, restricted, body)

    blocked = wait_for(
        lambda: (o := get(custom, restricted, "rooted")) and condition(o, ConditionType.PODS_BLOCKED) and o,
        60,
        "the PodsBlocked condition",
    )

    cond = condition(blocked, ConditionType.PODS_BLOCKED)
    assert cond["reason"] == "FailedCreate"
    assert "rooted-p0-a1" in cond["message"] and "violates PodSecurity" in cond["message"]
    wait_event(core, restricted, "rooted", "Warning", "FailedCreate")
    assert any("violates PodSecurity" in m for t, r, m in events(core, restricted, "rooted") if r == "FailedCreate")
    now = get(custom, restricted, "rooted")["status"]
    assert now["phase"] == "Blocked" and "violates PodSecurity" in now["message"], now

    # The cause fixed, the run goes on by itself: the Job controller retries the pod.
    core.patch_namespace(restricted, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
    done = wait_phase(custom, restricted, "rooted", {"Succeeded", "Failed"}, 180)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert condition(done, ConditionType.PODS_BLOCKED) is None


@pytest.mark.cluster
def test_a_finished_workflow_needs_no_secret_and_its_ttl_still_deletes_it(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 3)
    create(
        custom, namespace, workflow("brief", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, ttlSecondsAfterFinished=6)
    )
    wait_phase(custom, namespace, "brief", {"Succeeded"}, 120)
    core.delete_namespaced_secret("minio-creds", namespace)  # the run is over: nothing needs it

    wait_for(
        lambda: not custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL)["items"],
        60,
        "the TTL to delete the finished workflow",
    )
    assert not [r for _, r, _ in events(core, namespace, "brief") if r == "SecretNotFound"]
