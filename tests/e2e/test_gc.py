"""`paraflow gc` against the real cluster and MinIO: it lists, then removes, the records and
outputs of a run whose workflow was deleted (here re-created under the same name, whose new run
shares the output prefix), and never touches the live run's data or objects paraflow did not write."""

from __future__ import annotations

import io
import os
import subprocess
import uuid

import pytest
from kubernetes import client
from minio import Minio

from paraflow import constants as c
from tests.e2e.test_cli import PARAFLOW
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import create, upload_inputs, wait_phase, workflow

pytestmark = pytest.mark.cluster


def keys(s3: Minio, bucket: str, prefix: str) -> set[str]:
    return {o.object_name or "" for o in s3.list_objects(bucket, prefix=prefix, recursive=True)}


def test_gc_removes_only_the_deleted_runs_data_and_keeps_the_live_runs_and_foreign_objects(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 6)
    endpoint = test_env["PARAFLOW_TEST_S3_ENDPOINT"]
    old = create(custom, namespace, workflow("gcwf", endpoint, bucket))
    assert wait_phase(custom, namespace, "gcwf", {"Succeeded", "Failed"}, 120)["status"]["phase"] == "Succeeded"
    custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "gcwf")
    wait_for(
        lambda: not custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL)["items"],
        60,
        "the first workflow to go",
    )
    new = create(custom, namespace, workflow("gcwf", endpoint, bucket))
    assert wait_phase(custom, namespace, "gcwf", {"Succeeded", "Failed"}, 120)["status"]["phase"] == "Succeeded"
    dead, live = old["metadata"]["uid"], new["metadata"]["uid"]
    foreign = {
        f"output/_paraflow/{uuid.uuid4()}/notes.txt",
        "output/_paraflow/not-a-uid/plan.json",
        "output/readme.txt",
    }
    for key in foreign:
        s3.put_object(bucket, key, io.BytesIO(b"not paraflow's"), 14)
    before = keys(s3, bucket, "")
    assert any(k.startswith(f"output/{dead}/") for k in before) and any(k.startswith(f"output/{live}/") for k in before)

    env = {
        **os.environ,
        "PARAFLOW_S3_ACCESS_KEY": test_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
        "PARAFLOW_S3_SECRET_KEY": test_env["PARAFLOW_TEST_S3_SECRET_KEY"],
    }
    args = [PARAFLOW, "gc", "--bucket", bucket, "--prefix", "output/", "--endpoint", endpoint]
    listed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert f"run {dead}:" in listed.stdout and live not in listed.stdout
    assert "1 run(s) of deleted workflows" in listed.stdout
    assert keys(s3, bucket, "") == before, "listing removes nothing"

    removed = subprocess.run([*args, "--delete"], capture_output=True, text=True, env=env, timeout=120)
    assert removed.returncode == 0, removed.stderr
    after = keys(s3, bucket, "")
    gone = {k for k in before if k.startswith((f"output/{dead}/", f"output/_paraflow/{dead}/"))}
    assert gone and after == before - gone
    assert foreign <= after and any(k.startswith(f"output/_paraflow/{live}/") for k in after)
