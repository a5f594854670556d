"""Fault injection on the local cluster: the operator SIGKILLed again and again, the apiserver and
MinIO restarted, pods killed mid-write, a child Job deleted by hand, a destination that refuses
writes. After each the workflow completes (or fails with a clear condition and is redriven), no
partition succeeds twice in the manifest, none is lost, and replicas match their sources.

These restart processes of the local cluster (hack/cluster.sh restart), so they run there only:
hack/test.sh leaves tests/local out when it is pointed at another cluster.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client
from minio import Minio

from paraflow import constants as c
from paraflow.k8s.jobindex import JobIndex
from paraflow.k8s.jobwatch import JobWatch, _Position
from paraflow.reasons import ConditionType
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import condition, create, get, partition_jobs, patch, upload_inputs, wait_phase, workflow

pytestmark = [pytest.mark.local, pytest.mark.serial]

CLUSTER = Path(__file__).resolve().parents[2] / "hack" / "cluster.sh"
DEMO_SLEEP = {"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "1"}


def restart(component: str) -> None:
    done = subprocess.run(["bash", str(CLUSTER), "restart", component], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr


def manifest_of(s3: Minio, bucket: str, wf: dict) -> dict:
    return json.loads(s3.get_object(bucket, f"output/_paraflow/{wf['metadata']['uid']}/manifest.json").read())


def assert_each_partition_won_once(s3: Minio, bucket: str, wf: dict, total: int) -> None:
    indexes = [p["index"] for p in manifest_of(s3, bucket, wf)["succeeded"]]
    assert sorted(indexes) == list(range(total)), "every partition exactly once in the manifest"


def assert_replicas_match(s3: Minio, bucket: str, replica_bucket: str, wf: dict) -> None:
    for entry in manifest_of(s3, bucket, wf)["succeeded"]:
        attempt = f"output/{wf['metadata']['uid']}/p{entry['index']}/a{entry['attempt']}/"
        source = s3.get_object(bucket, f"{attempt}checksums-s0.txt").read()
        assert s3.get_object(replica_bucket, f"p{entry['index']}/checksums-s0.txt").read() == source


def test_repeated_sigkills_of_the_operator_lose_and_duplicate_nothing(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    rnd = random.Random(20261125)
    upload_inputs(s3, bucket, 36)  # 12 partitions
    replica = f"{bucket}-replica"
    s3.make_bucket(replica)
    body = workflow("killed", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=3)
    body["spec"]["processor"]["env"] = [DEMO_SLEEP]
    body["spec"]["replication"] = {"destinations": [{"name": "copy", "bucket": replica}]}
    wf = create(custom, namespace, body)
    deadline = time.monotonic() + 300
    kills = 0
    while kills < 5 and time.monotonic() < deadline:
        time.sleep(rnd.uniform(0.5, 4.0))
        if get(custom, namespace, "killed").get("status", {}).get("phase") == "Succeeded":
            break
        operator.kill()
        kills += 1
        time.sleep(rnd.uniform(0.0, 2.0))
        operator.start()
        operator.wait_started()
    done = wait_phase(custom, namespace, "killed", {"Succeeded", "Failed"}, 300)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert kills >= 3
    names = sorted(j.metadata.name for j in partition_jobs(batch, namespace, "killed"))
    assert names == sorted(f"killed-p{i}-a1" for i in range(12)), "one Job per partition, none twice"
    assert_each_partition_won_once(s3, bucket, wf, 12)
    assert_replicas_match(s3, bucket, replica, wf)


def test_apiserver_and_minio_restarts_mid_run(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 24)  # 8 partitions
    body = workflow("restarts", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=2)
    body["spec"]["processor"]["env"] = [DEMO_SLEEP]
    body["spec"]["retry"] = {"maxAttempts": 4, "intervalSeconds": 1, "jitter": "none"}
    apiserver_log = Path(os.environ["PARAFLOW_TEST_AUDIT_LOG"]).with_name("kube-apiserver.log")
    before = apiserver_log.read_bytes()
    wf = create(custom, namespace, body)
    wait_phase(custom, namespace, "restarts", {"Running"}, 60)
    restart("kube-apiserver")
    time.sleep(2)
    restart("minio")
    done = wait_phase(custom, namespace, "restarts", {"Succeeded", "Failed"}, 300)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert_each_partition_won_once(s3, bucket, wf, 8)
    assert apiserver_log.read_bytes().startswith(before), "a restarted component's log keeps its last lines"


def test_a_job_watch_from_before_an_apiserver_restart_lists_again(
    kube: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    """A restarted apiserver's watch cache begins at its own list, so a place in the stream from
    before the restart (with a write since) is gone: the watch must list again, not resume. Only a
    restart makes that certain; on a young apiserver even resourceVersion 1 is still served."""
    before = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="moved-on")))
    restart("kube-apiserver")
    watch = JobWatch(
        client.ApiClient(kube.configuration),
        [namespace],
        JobIndex(),
        wake=lambda _: None,
        server_timeout=30,
        client_timeout=60,
    )
    position = _Position(before)
    watch._follow(namespace, position)
    assert position.version is None, "the next round lists again"


def test_pods_killed_mid_write_and_a_job_deleted_by_hand(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 18)  # 6 partitions
    body = workflow("chaos", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=3)
    body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "3"}]
    body["spec"]["processor"]["backoffLimitPerIndex"] = 1
    wf = create(custom, namespace, body)
    selector = f"{c.LABEL_WORKFLOW}=chaos,{c.LABEL_ROLE}={c.ROLE_PARTITION}"
    running = wait_for(
        lambda: [
            p for p in core.list_namespaced_pod(namespace, label_selector=selector).items if p.status.phase == "Running"
        ],
        60,
        "partition pods to run",
    )
    core.delete_namespaced_pod(running[0].metadata.name, namespace)  # killed while it works
    job = wait_for(
        lambda: [
            j
            for j in partition_jobs(batch, namespace, "chaos")
            if not j.status.succeeded
            and not j.status.failed
            and j.metadata.name != running[0].metadata.labels["job-name"]
        ],
        60,
        "another running partition Job",
    )[0]
    batch.delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Foreground")
    done = wait_phase(custom, namespace, "chaos", {"Succeeded", "Failed"}, 240)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert_each_partition_won_once(s3, bucket, wf, 6)


def test_a_read_only_destination_fails_replication_clearly_and_a_redrive_completes_it(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    mc = ["mc", "--config-dir", str(tmp_path / "mc")]
    subprocess.run(
        [
            *mc,
            "alias",
            "set",
            "local",
            test_env["PARAFLOW_TEST_S3_ENDPOINT"],
            test_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
            test_env["PARAFLOW_TEST_S3_SECRET_KEY"],
        ],
        check=True,
        capture_output=True,
    )
    user, password = f"ro{namespace[-5:]}", "read-only-secret-123"
    subprocess.run([*mc, "admin", "user", "add", "local", user, password], check=True, capture_output=True)
    subprocess.run(
        [*mc, "admin", "policy", "attach", "local", "readonly", "--user", user], check=True, capture_output=True
    )
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "readonly"}, "stringData": {"accessKey": user, "secretKey": password}}
    )
    upload_inputs(s3, bucket, 6)
    replica = f"{bucket}-ro"
    s3.make_bucket(replica)
    body = workflow("rodest", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    body["spec"]["retry"] = {"maxAttempts": 1}
    body["spec"]["replication"] = {
        "destinations": [
            {
                "name": "ro",
                "bucket": replica,
                "storage": {"endpoint": test_env["PARAFLOW_TEST_S3_ENDPOINT"], "credentialsSecret": "readonly"},
            }
        ]
    }
    wf = create(custom, namespace, body)
    failed = wait_phase(custom, namespace, "rodest", {"Failed", "Succeeded"}, 180)
    assert failed["status"]["phase"] == "Failed"
    assert condition(failed, ConditionType.FAILED)["reason"] == "ReplicationFailed"
    # Events are posted after the status that says Failed: wait for it, it must come.
    denied = wait_for(
        lambda: [
            e.message
            for e in core.list_namespaced_event(namespace).items
            if e.reason == "ReplicationFailed" and "AccessDenied" in e.message
        ],
        30,
        "a ReplicationFailed Event saying AccessDenied",
    )
    assert "not copied; first: ro: p" in denied[0], denied

    subprocess.run(
        [*mc, "admin", "policy", "attach", "local", "readwrite", "--user", user], check=True, capture_output=True
    )
    patch(custom, namespace, "rodest", {"metadata": {"annotations": {c.ANNOTATION_REDRIVE: "writable"}}})
    done = wait_phase(custom, namespace, "rodest", {"Succeeded"}, 180)
    assert done["status"]["replication"]["failedIndexes"] == ""
    assert_replicas_match(s3, bucket, replica, wf)
