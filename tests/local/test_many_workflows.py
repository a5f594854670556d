"""Many workflows at once share one operator and one write budget: every workflow completes,
and the apiserver (its audit log, not the operator's own counters) never sees the operator's
writes above the configured rate cap."""

from __future__ import annotations

import datetime as dt
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client
from minio import Minio

from tests.local.test_scale_kwok import KWOK_PLACEMENT
from tests.operator_process import OperatorProcess
from tests.support import most_in_any_window, operator_writes
from tests.workflows import create, wait_phase, workflow

pytestmark = [pytest.mark.local, pytest.mark.serial]

WORKFLOWS = 30
PARTITIONS = 10
WRITE_QPS = 8.0
WRITE_BURST = 10
SEND_JITTER_SECONDS = 1.0  # measured lag up to ~0.75 s during the full suite


def test_thirty_concurrent_workflows_complete_under_one_global_write_rate_cap(
    operator_session: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    audit_log = Path(os.environ["PARAFLOW_TEST_AUDIT_LOG"])
    operator_session.kill()  # only the capped operator below may write
    capped = OperatorProcess(
        {"PARAFLOW_API_WRITE_QPS": str(WRITE_QPS), "PARAFLOW_API_WRITE_BURST": str(WRITE_BURST)}, verbose=False
    )
    since = dt.datetime.now(dt.UTC)
    capped.start().wait_started()
    try:
        keys = [f"w{w:02d}/input/{i:02d}" for w in range(WORKFLOWS) for i in range(PARTITIONS)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: s3.put_object(bucket, k, io.BytesIO(b"x"), 1), keys))
        for w in range(WORKFLOWS):
            body = workflow(f"many-{w:02d}", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=PARTITIONS)
            body["spec"]["input"]["prefix"] = f"w{w:02d}/input/"
            body["spec"]["output"]["prefix"] = f"w{w:02d}/output/"
            body["spec"]["partitioner"]["builtin"]["maxItemsPerPartition"] = 1
            body["spec"]["processor"].update(KWOK_PLACEMENT)
            create(custom, namespace, body)
        for w in range(WORKFLOWS):
            status = wait_phase(custom, namespace, f"many-{w:02d}", {"Succeeded", "Failed"}, 600)["status"]
            assert status["phase"] == "Succeeded", status
            assert status["partitions"]["succeeded"] == PARTITIONS
    finally:
        capped.stop()

    times = operator_writes(audit_log, since)
    # At least one Job per partition and per partitioner, plus status patches: all seen.
    assert len(times) >= WORKFLOWS * (PARTITIONS + 1)
    for window in (1.0, 5.0, 10.0):
        # The bucket paces sends; the apiserver stamps arrivals, which lag sends by the client's
        # own latency (thread hand-off, serialisation, TLS) on this loaded 2-core machine.
        allowed = WRITE_BURST + WRITE_QPS * (window + SEND_JITTER_SECONDS)
        most = most_in_any_window(times, window)
        assert most <= allowed, f"{most} operator writes within {window}s, cap allows {allowed}"
    # The cap was binding, not idle: 300 Job creates are wanted within seconds of the plans
    # landing, so the densest 10 s hold nearly all the cap allows.
    assert most_in_any_window(times, 10.0) >= 0.8 * (WRITE_BURST + WRITE_QPS * 10), "the cap never bound"
