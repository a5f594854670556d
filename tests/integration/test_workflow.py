"""A ParallelWorkflow runs end to end on the real cluster: partitioner Job, partition Jobs whose
pods really run (pod runner), outputs and result manifest in the real MinIO."""

from __future__ import annotations

import hashlib
import json

import pytest
from kubernetes import client
from minio import Minio

from paraflow.reasons import ConditionType
from paraflow_worker.contract import ResultManifest, ShardResult
from tests.operator_process import OperatorProcess
from tests.workflows import (
    active_count,
    condition,
    create,
    events,
    partition_jobs,
    upload_inputs,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.cluster


def read_json(s3: Minio, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(bucket, key).read())


def test_twenty_partitions_run_end_to_end_within_max_concurrency(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    inputs = upload_inputs(s3, bucket, 60)
    body = workflow("logs", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=4)
    body["spec"]["processor"]["shardsPerPartition"] = 2
    created = create(custom, namespace, body)

    peak = 0

    def sample() -> None:
        nonlocal peak
        peak = max(peak, active_count(partition_jobs(batch, namespace, "logs")))

    done = wait_phase(custom, namespace, "logs", {"Succeeded", "Failed"}, 240, on_poll=sample)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["partitions"] == {
        "total": 20,
        "pending": 0,
        "queued": 0,
        "running": 0,
        "succeeded": 20,
        "failed": 0,
        "notRun": 0,
    }
    assert status["succeededIndexes"] == "0-19"
    assert 1 <= peak <= 4, f"{peak} partition Jobs were active at once with maxConcurrency 4"
    assert condition(done, ConditionType.PARTITIONED)["status"] == "True"
    assert condition(done, ConditionType.SUCCEEDED)["status"] == "True"

    # Every child is owned by the workflow and labelled for selection.
    jobs = partition_jobs(batch, namespace, "logs")
    assert len(jobs) == 20
    for job in jobs:
        assert job.metadata.owner_references[0].uid == created["metadata"]["uid"]
        assert job.spec.completion_mode == "Indexed" and job.spec.completions == 2

    # The manifest names one attempt per partition; following it finds every input exactly once.
    run = f"output/_paraflow/{created['metadata']['uid']}/"
    assert status["manifest"] == f"s3://{bucket}/{run}manifest.json"
    manifest = ResultManifest.model_validate(read_json(s3, bucket, f"{run}manifest.json"))
    assert sorted(p.index for p in manifest.succeeded) == list(range(20))
    seen: dict[str, str] = {}
    for entry in manifest.succeeded:
        for shard in range(2):
            result = ShardResult.model_validate(read_json(s3, bucket, f"{entry.results_prefix}s{shard}.json"))
            for out in result.outputs:
                data = s3.get_object(bucket, out.key).read()
                assert hashlib.sha256(data).hexdigest() == out.sha256
                for line in data.decode().splitlines():
                    key, _size, digest = line.split("\t")
                    assert key not in seen, f"{key} processed twice"
                    seen[key] = digest
    assert seen == {k: hashlib.sha256(v).hexdigest() for k, v in inputs.items()}

    reasons = {reason for _, reason, _ in events(core, namespace, "logs")}
    assert {"Partitioning", "Partitioned", "Running", "Succeeded"} <= reasons
    # Each Event names the replica that posted it (kubectl describe: "From paraflow-operator, <it>").
    posted = core.list_namespaced_event(namespace, field_selector="involvedObject.name=logs").items
    assert {(e.reporting_component, e.reporting_instance) for e in posted} == {("paraflow-operator", operator.identity)}
