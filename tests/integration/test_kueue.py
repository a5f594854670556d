"""Kueue admits a workflow's Jobs under a ClusterQueue's quota, as a multi-tenant cluster runs it
(hack/kueue.sh installs Kueue with its own manifests and webhooks; namespaces opt in with
paraflow.dev/kueue=managed, and there Kueue also holds Jobs without a queue name).

The quota admits two partitions at a time (100m of CPU each, 200m in all): the rest wait as
Queued; a higher-priority workflow preempts a lower one, which resumes without counting a
failure; and a workflow that names no queue where Kueue holds every Job says why it waits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from minio import Minio

from paraflow import constants as c
from paraflow.reasons import ConditionType, Reason
from paraflow_worker import contract
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import condition, create, get, upload_inputs, wait_phase, workflow

pytestmark = [pytest.mark.runtime, pytest.mark.kueue]

KUEUE = ("kueue.x-k8s.io", "v1beta2")
QUEUE = "team"
PARTITION_CPU = "100m"


@dataclass(frozen=True)
class Queue:
    namespace: str
    cluster_queue: str
    low: str
    high: str


def kueue_object(
    custom: client.CustomObjectsApi, plural: str, body: dict[str, Any], namespace: str | None = None
) -> None:
    group, version = KUEUE
    body = {"apiVersion": f"{group}/{version}", **body}
    if namespace is None:
        custom.create_cluster_custom_object(group, version, plural, body)
    else:
        custom.create_namespaced_custom_object(group, version, namespace, plural, body)


@pytest.fixture
def queue(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str) -> Iterator[Queue]:
    """A ClusterQueue whose quota admits two partitions at once, its LocalQueue in ``namespace``,
    and two WorkloadPriorityClasses; lower priorities are preempted within the queue."""
    core.patch_namespace(namespace, {"metadata": {"labels": {"paraflow.dev/kueue": "managed"}}})
    tag = uuid.uuid4().hex[:6]
    flavor, cq, low, high = f"flavor-{tag}", f"cq-{tag}", f"low-{tag}", f"high-{tag}"
    kueue_object(custom, "resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": flavor}})
    quota = [{"name": "cpu", "nominalQuota": "200m"}, {"name": "memory", "nominalQuota": "2Gi"}]
    kueue_object(
        custom,
        "clusterqueues",
        {
            "kind": "ClusterQueue",
            "metadata": {"name": cq},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "resourceGroups": [
                    {"coveredResources": ["cpu", "memory"], "flavors": [{"name": flavor, "resources": quota}]}
                ],
                "preemption": {"withinClusterQueue": "LowerPriority"},
            },
        },
    )
    kueue_object(
        custom,
        "localqueues",
        {"kind": "LocalQueue", "metadata": {"name": QUEUE}, "spec": {"clusterQueue": cq}},
        namespace,
    )
    for name, value in ((low, 100), (high, 1000)):
        kueue_object(
            custom,
            "workloadpriorityclasses",
            {"kind": "WorkloadPriorityClass", "metadata": {"name": name}, "value": value},
        )
    yield Queue(namespace, cq, low, high)
    group, version = KUEUE
    for plural, name in (
        ("clusterqueues", cq),
        ("resourceflavors", flavor),
        ("workloadpriorityclasses", low),
        ("workloadpriorityclasses", high),
    ):
        custom.delete_cluster_custom_object(group, version, plural, name)


def queued_workflow(name: str, endpoint: str, bucket: str, *, prefix: str, sleep: int, **spec: Any) -> dict[str, Any]:
    body = workflow(name, endpoint, bucket, queueName=QUEUE, maxConcurrency=4, **spec)
    body["spec"]["input"]["prefix"] = prefix
    body["spec"]["output"]["prefix"] = f"{name}-out/"
    body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": str(sleep)}]
    body["spec"]["processor"]["resources"] = {"requests": {"cpu": PARTITION_CPU, "memory": "64Mi"}}
    return body


def partition_jobs(batch: client.BatchV1Api, namespace: str, workflow_name: str) -> list[client.V1Job]:
    selector = f"{c.LABEL_WORKFLOW}={workflow_name},{c.LABEL_ROLE}={c.ROLE_PARTITION}"
    return batch.list_namespaced_job(namespace, label_selector=selector).items


def admitted_and_unfinished(jobs: list[client.V1Job]) -> int:
    return sum(1 for j in jobs if not j.spec.suspend and not j.status.succeeded and not j.status.failed)


def manifest_indexes(s3: Minio, bucket: str, wf: dict[str, Any], prefix: str) -> list[int]:
    key = contract.manifest_key(contract.run_prefix(prefix, wf["metadata"]["uid"]))
    return sorted(p["index"] for p in json.loads(s3.get_object(bucket, key).read())["succeeded"])


def test_a_queued_workflow_runs_two_partitions_at_a_time_under_the_quota_and_shows_the_rest_queued(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    queue: Queue,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 15, prefix="in/")  # 5 partitions
    wf = create(
        custom,
        queue.namespace,
        queued_workflow("quota", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, prefix="in/", sleep=4),
    )
    seen: dict[str, int] = {"most_admitted": 0, "most_queued": 0}
    conditions: set[str] = set()

    def watch() -> None:
        seen["most_admitted"] = max(
            seen["most_admitted"], admitted_and_unfinished(partition_jobs(batch, queue.namespace, "quota"))
        )
        obj = get(custom, queue.namespace, "quota")
        seen["most_queued"] = max(
            seen["most_queued"], ((obj.get("status") or {}).get("partitions") or {}).get("queued", 0)
        )
        held = condition(obj, ConditionType.QUEUED)
        if held is not None:
            conditions.add(held["reason"])

    done = wait_phase(custom, queue.namespace, "quota", {"Succeeded", "Failed"}, 300, on_poll=watch)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert seen["most_admitted"] == 2, "the quota admits two partitions at a time, and both ran at once"
    assert seen["most_queued"] >= 1, "the partitions beyond the quota showed as queued"
    assert conditions == {Reason.AWAITING_ADMISSION}
    assert condition(done, ConditionType.QUEUED) is None, "nothing waits once the run is over"
    assert manifest_indexes(s3, bucket, wf, "quota-out/") == [0, 1, 2, 3, 4]
    for job in partition_jobs(batch, queue.namespace, "quota"):
        assert job.metadata.labels[c.LABEL_KUEUE_QUEUE] == QUEUE


def test_a_higher_priority_workflow_preempts_a_lower_one_and_both_end_with_every_partition_once(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    queue: Queue,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    endpoint = test_env["PARAFLOW_TEST_S3_ENDPOINT"]
    upload_inputs(s3, bucket, 12, prefix="low/")  # 4 partitions
    upload_inputs(s3, bucket, 6, prefix="high/")  # 2 partitions
    low = create(
        custom,
        queue.namespace,
        queued_workflow("low", endpoint, bucket, prefix="low/", sleep=20, queuePriorityClass=queue.low),
    )
    wait_for(
        lambda: admitted_and_unfinished(partition_jobs(batch, queue.namespace, "low")) == 2,
        120,
        "two low partitions running",
    )
    high = create(
        custom,
        queue.namespace,
        queued_workflow("high", endpoint, bucket, prefix="high/", sleep=1, queuePriorityClass=queue.high),
    )

    def low_preempted() -> bool:
        obj = get(custom, queue.namespace, "low")
        return ((obj.get("status") or {}).get("partitions") or {}).get("queued", 0) == 4

    wait_for(low_preempted, 120, "the low workflow's running partitions preempted back into the queue")
    high_done = wait_phase(custom, queue.namespace, "high", {"Succeeded", "Failed"}, 240)
    assert high_done["status"]["phase"] == "Succeeded", high_done["status"]
    low_done = wait_phase(custom, queue.namespace, "low", {"Succeeded", "Failed"}, 300)
    assert low_done["status"]["phase"] == "Succeeded", low_done["status"]
    assert low_done["status"].get("attempts", {}) == {}, "a preemption is no failure: no partition ran a second attempt"
    assert low_done["status"]["partitions"]["failed"] == 0
    assert manifest_indexes(s3, bucket, low, "low-out/") == [0, 1, 2, 3]
    assert manifest_indexes(s3, bucket, high, "high-out/") == [0, 1]


def test_where_kueue_holds_every_job_a_workflow_without_a_queue_name_says_why_it_waits(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    queue: Queue,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    body = workflow("unqueued", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)  # no queueName
    create(custom, queue.namespace, body)

    def says_why() -> dict[str, Any] | None:
        obj = get(custom, queue.namespace, "unqueued")
        held = condition(obj, ConditionType.QUEUED)
        return obj if held is not None and held["reason"] == Reason.SUSPENDED_WITHOUT_QUEUE else None

    obj = wait_for(says_why, 60, "the workflow to say its Jobs are held without a queue name")
    assert "spec.queueName is not set" in obj["status"]["message"]
    assert obj["status"]["phase"] != "Failed", "it says why it waits; progressDeadlineSeconds (600 s) ends the wait"


def test_a_queue_kueue_does_not_know_blocks_the_run_saying_so_and_fails_it_at_its_progress_deadline(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    queue: Queue,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 3, prefix="in/")
    body = queued_workflow("typo", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, prefix="in/", sleep=0)
    body["spec"] |= {"queueName": "no-such-queue", "progressDeadlineSeconds": 30}
    create(custom, queue.namespace, body)

    def blocked() -> dict[str, Any] | None:
        obj = get(custom, queue.namespace, "typo")
        held = condition(obj, ConditionType.QUEUED)
        return obj if held is not None and held["reason"] == Reason.QUEUE_INADMISSIBLE else None

    obj = wait_for(blocked, 60, "the run to say Kueue cannot admit its Jobs")
    assert obj["status"]["phase"] == "Blocked" and "no-such-queue" in obj["status"]["message"]
    done = wait_phase(custom, queue.namespace, "typo", {"Failed", "Succeeded"}, 120)
    failed = condition(done, ConditionType.FAILED)
    assert failed is not None and failed["reason"] == Reason.PROGRESS_DEADLINE_EXCEEDED
