"""1,000 partitions on KWOK nodes: the fan-out completes and status stays small."""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client
from minio import Minio

from tests.operator_process import OperatorProcess
from tests.workflows import create, partition_jobs, wait_phase, workflow

pytestmark = [pytest.mark.local, pytest.mark.kwok]

KWOK_PLACEMENT = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}


def test_a_1000_partition_workflow_completes_on_kwok_with_status_under_8_kib(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(bucket, f"input/{i:05d}", io.BytesIO(b"x"), 1), range(1000)))
    body = workflow("wide", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=100)
    body["spec"]["partitioner"]["builtin"]["maxItemsPerPartition"] = 1
    body["spec"]["processor"].update(KWOK_PLACEMENT)
    started = time.monotonic()
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "wide", {"Succeeded", "Failed"}, 600)
    makespan = time.monotonic() - started
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["partitions"]["succeeded"] == 1000
    assert status["succeededIndexes"] == "0-999"
    size = len(json.dumps(status))
    assert size < 8 * 1024
    jobs = partition_jobs(batch, namespace, "wide")
    assert len(jobs) == 1000
    assert all(j.spec.template.spec.node_selector == {"type": "kwok"} for j in jobs)
    print(f"\n1000 partitions on KWOK: makespan {makespan:.1f}s, status {size} bytes")
