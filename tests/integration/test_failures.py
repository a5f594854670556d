"""Retries, failure tolerance, redrive, live maxConcurrency and operator restarts, for real."""

from __future__ import annotations

import io
import json
import time

import pytest
from kubernetes import client
from minio import Minio

from paraflow import constants as c
from paraflow.reasons import ConditionType
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import (
    active_count,
    condition,
    create,
    get,
    partition_job_creations,
    partition_jobs,
    patch,
    upload_inputs,
    wait_event,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.cluster


def put(s3: Minio, bucket: str, key: str, text: str) -> None:
    s3.put_object(bucket, key, io.BytesIO(text.encode()), len(text))


def chaos_key(obj: dict, partition: int) -> str:
    return f"output/_paraflow/{obj['metadata']['uid']}/chaos/p{partition}"


def unsuspend(custom: client.CustomObjectsApi, ns: str, name: str) -> None:
    patch(custom, ns, name, {"spec": {"suspend": False}})


@pytest.mark.parametrize("succeeded_jobs", ["Retain", "Delete"])
def test_retry_then_tolerance_breach_then_redrive_reruns_only_the_failed_partition(
    succeeded_jobs: str,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 18)  # 6 partitions of 3
    # One at a time, so partition 1's retry surely ran before partition 4 broke the tolerance.
    body = workflow(
        "flaky",
        test_env["PARAFLOW_TEST_S3_ENDPOINT"],
        bucket,
        maxConcurrency=1,
        suspend=True,
        succeededJobs=succeeded_jobs,
    )
    body["spec"]["processor"]["nonRetryableExitCodes"] = [42]
    # Exit 42 must skip this pod retry. One is enough to prove it: each retry of partition 1's
    # failing first attempt waits out the Job controller's pod backoff (10 s, then 20 s, 40 s).
    body["spec"]["processor"]["backoffLimitPerIndex"] = 1
    with partition_job_creations(batch, namespace, "flaky") as created:
        wf = create(custom, namespace, body)
        wait_phase(custom, namespace, "flaky", {"Suspended"}, 30)
        put(s3, bucket, chaos_key(wf, 1), "1:1")  # partition 1: its first attempt fails, the retry succeeds
        put(s3, bucket, chaos_key(wf, 4), "42")  # partition 4: every attempt fails, non-retryable
        unsuspend(custom, namespace, "flaky")

        failed = wait_phase(custom, namespace, "flaky", {"Failed", "Succeeded"}, 180)
        status = failed["status"]
        assert status["phase"] == "Failed", status
        assert status["failedIndexes"] == "4"
        # Partition 1 was retried; exit 42 is non-retryable: partition 4 got no second attempt.
        assert status["attempts"] == {"2": "1"}
        assert condition(failed, ConditionType.FAILED)["reason"] == "FailureToleranceExceeded"
        wait_event(core, namespace, "flaky", "Warning", "PartitionsFailed")
        wait_event(core, namespace, "flaky", "Warning", "Failed")
        # One pod, one attempt, despite backoffLimitPerIndex 1 and maxAttempts 2.
        p4 = [j for j in partition_jobs(batch, namespace, "flaky") if j.metadata.labels[c.LABEL_PARTITION] == "4"]
        assert [(j.metadata.name, j.status.failed) for j in p4] == [("flaky-p4-a1", 1)]
        # A failed run still indexes what succeeded, once nothing runs any more.
        run = f"output/_paraflow/{wf['metadata']['uid']}/"
        settled = wait_for(
            lambda: get(custom, namespace, "flaky")["status"].get("manifest"), 30, "the failed run's manifest"
        )
        assert settled == f"s3://{bucket}/{run}manifest.json"
        failed_manifest = json.loads(s3.get_object(bucket, f"{run}manifest.json").read())
        assert ({p["index"] for p in failed_manifest["succeeded"]}, failed_manifest["failed"]) == ({0, 1, 2, 3}, [4])
        assert (failed_manifest["workflow"], failed_manifest["namespace"]) == ("flaky", namespace)

        # The problem is fixed; a redrive re-runs partition 4 only.
        s3.remove_object(bucket, chaos_key(wf, 4))
        jobs_before = set(created)
        patch(custom, namespace, "flaky", {"metadata": {"annotations": {c.ANNOTATION_REDRIVE: "fix-1"}}})
        done = wait_phase(custom, namespace, "flaky", {"Succeeded"}, 120)
        new_jobs = set(created) - jobs_before
        # With Delete the succeeded Jobs are gone by now: the status alone kept them from running again.
        assert all(len(uids) == 1 for uids in created.values()), f"a partition Job was created again: {created}"
        # Partition 4 again, plus partition 5 if the breach came before it ever started.
        # A whole new round of maxAttempts (2): attempts 3 and 4.
        assert "flaky-p4-a3" in new_jobs
        assert new_jobs <= {"flaky-p4-a3", "flaky-p5-a1"}
        assert done["status"]["redrive"] == {"count": 1, "lastToken": "fix-1"}
        manifest = json.loads(s3.get_object(bucket, f"{run}manifest.json").read())
        winners = {p["index"]: p["attempt"] for p in manifest["succeeded"]}
        assert {p: a for p, a in winners.items() if p != 4} == {0: 1, 1: 2, 2: 1, 3: 1, 5: 1}
        assert winners[4] == 3


def test_max_concurrency_can_be_raised_while_running(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 24)  # 8 partitions
    body = workflow("tuned", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=1)
    body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "2"}]
    create(custom, namespace, body)
    wait_phase(custom, namespace, "tuned", {"Running"}, 60)
    before: list[int] = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        before.append(active_count(partition_jobs(batch, namespace, "tuned")))
        time.sleep(0.2)
    assert max(before) == 1

    patch(custom, namespace, "tuned", {"spec": {"maxConcurrency": 3}})
    after: list[int] = []
    wait_phase(
        custom,
        namespace,
        "tuned",
        {"Succeeded"},
        180,
        on_poll=lambda: after.append(active_count(partition_jobs(batch, namespace, "tuned"))),
    )
    assert max(after) == 3, after


def test_sigkilled_operator_resumes_without_losing_or_duplicating_partitions(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 48)  # 16 partitions
    body = workflow("survivor", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=4)
    body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "1"}]
    wf = create(custom, namespace, body)
    peak = 0

    def sample() -> None:
        nonlocal peak
        peak = max(peak, active_count(partition_jobs(batch, namespace, "survivor")))

    for kill_at in (3, 9):  # two kills, at different points of the run
        wait_phase(custom, namespace, "survivor", {"Running"}, 60)
        while len(partition_jobs(batch, namespace, "survivor")) < kill_at:
            sample()
            time.sleep(0.1)
        operator.kill()
        for _ in range(15):  # the cluster goes on while the operator is dead
            sample()
            time.sleep(0.2)
        operator.start()
        operator.wait_started()

    done = wait_phase(custom, namespace, "survivor", {"Succeeded", "Failed"}, 240, on_poll=sample)
    assert done["status"]["phase"] == "Succeeded"
    assert peak <= 4
    jobs = partition_jobs(batch, namespace, "survivor")
    assert sorted(j.metadata.name for j in jobs) == sorted(f"survivor-p{i}-a1" for i in range(16))
    run = f"output/_paraflow/{wf['metadata']['uid']}/"
    manifest = json.loads(s3.get_object(bucket, f"{run}manifest.json").read())
    assert sorted(p["index"] for p in manifest["succeeded"]) == list(range(16))
    assert get(custom, namespace, "survivor")["status"]["partitions"]["succeeded"] == 16


def test_succeeded_jobs_deleted_across_operator_kills_leave_each_partition_run_once(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    """succeededJobs: Delete removes each succeeded partition Job once status records it; an
    operator killed in between finds neither a Job nor a gap, and never runs a partition again."""
    upload_inputs(s3, bucket, 48)  # 16 partitions
    body = workflow("tidy", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=4, succeededJobs="Delete")
    body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "1"}]
    with partition_job_creations(batch, namespace, "tidy") as created:
        wf = create(custom, namespace, body)

        def succeeded() -> int:
            return int(get(custom, namespace, "tidy").get("status", {}).get("partitions", {}).get("succeeded", 0))

        for kill_at in (3, 9):
            wait_for(lambda at=kill_at: succeeded() >= at, 120, f"{kill_at} partitions succeeded")
            operator.kill()
            time.sleep(3)  # the cluster goes on while the operator is dead
            operator.start()
            operator.wait_started()

        done = wait_phase(custom, namespace, "tidy", {"Succeeded", "Failed"}, 240)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        wait_for(lambda: not partition_jobs(batch, namespace, "tidy"), 60, "every succeeded partition Job deleted")
    assert sorted(created) == sorted(f"tidy-p{i}-a1" for i in range(16))
    assert all(len(uids) == 1 for uids in created.values()), f"a partition Job was created again: {created}"
    manifest = json.loads(s3.get_object(bucket, f"output/_paraflow/{wf['metadata']['uid']}/manifest.json").read())
    assert sorted((p["index"], p["attempt"]) for p in manifest["succeeded"]) == [(i, 1) for i in range(16)]
