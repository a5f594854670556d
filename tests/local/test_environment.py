"""The test environment is real: Job pods run as processes, KWOK nodes carry load, MinIO stores."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from minio import Minio

from tests.conftest import PODRUNNER_NODE
from tests.support import wait_for

pytestmark = pytest.mark.local

WRITE_ONE_OBJECT = """
import os
from paraflow_worker.storage import make_client
i = os.environ["JOB_COMPLETION_INDEX"]
s3 = make_client(os.environ["S3_ENDPOINT"], os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"])
import io
data = f"hello from index {i}".encode()
s3.put_object(os.environ["BUCKET"], f"out/{i}.txt", io.BytesIO(data), len(data))
"""


def indexed_job(
    name: str, completions: int, pod_spec: dict[str, Any], parallelism: int | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": parallelism or completions,
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", **pod_spec}},
        },
    }


def job_condition(batch: client.BatchV1Api, ns: str, name: str) -> str | None:
    job = batch.read_namespaced_job_status(name, ns)
    for cond in job.status.conditions or []:
        if cond.status == "True" and cond.type in ("Complete", "Failed"):
            return str(cond.type)
    return None


def test_indexed_job_pods_run_as_processes_and_write_to_minio(
    batch: client.BatchV1Api, s3: Minio, namespace: str, bucket: str, test_env: dict[str, str]
) -> None:
    secret = {"name": "minio-creds"}
    pod = {
        "nodeSelector": {"kubernetes.io/hostname": PODRUNNER_NODE},
        "containers": [
            {
                "name": "writer",
                "image": "python:3.11",
                "command": ["python", "-c", WRITE_ONE_OBJECT],
                "env": [
                    {"name": "S3_ENDPOINT", "value": test_env["PARAFLOW_TEST_S3_ENDPOINT"]},
                    {"name": "S3_ACCESS_KEY", "valueFrom": {"secretKeyRef": {**secret, "key": "accessKey"}}},
                    {"name": "S3_SECRET_KEY", "valueFrom": {"secretKeyRef": {**secret, "key": "secretKey"}}},
                    {"name": "BUCKET", "value": bucket},
                ],
            }
        ],
    }
    batch.create_namespaced_job(namespace, indexed_job("writers", 3, pod))
    assert wait_for(lambda: job_condition(batch, namespace, "writers"), 120, "Job writers to finish") == "Complete"
    keys = sorted(o.object_name for o in s3.list_objects(bucket, prefix="out/", recursive=True))
    assert keys == ["out/0.txt", "out/1.txt", "out/2.txt"]
    body = s3.get_object(bucket, "out/2.txt").read()
    assert body == b"hello from index 2"


def test_a_pod_exiting_3_is_reported_failed_with_exit_code_3(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "exits-three"},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"kubernetes.io/hostname": PODRUNNER_NODE},
                "containers": [
                    {
                        "name": "main",
                        "image": "python:3.11",
                        "command": ["python", "-c", "import sys; print('bye'); sys.exit(3)"],
                    }
                ],
            },
        },
    )
    pod = wait_for(
        lambda: (p := core.read_namespaced_pod("exits-three", namespace)).status.phase == "Failed" and p,
        60,
        "pod exits-three to fail",
    )
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert terminated.reason == "Error"


def test_a_pod_whose_secret_is_missing_waits_with_create_container_config_error(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "no-secret"},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"kubernetes.io/hostname": PODRUNNER_NODE},
                "containers": [
                    {
                        "name": "main",
                        "image": "python:3.11",
                        "command": ["python", "-c", "pass"],
                        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
                    }
                ],
            },
        },
    )

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("no-secret", namespace).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting else None

    assert wait_for(waiting_reason, 60, "the pod to report why it waits") == "CreateContainerConfigError"
    assert core.read_namespaced_pod("no-secret", namespace).status.phase == "Pending"


def test_a_100_completion_indexed_job_completes_on_kwok_nodes(batch: client.BatchV1Api, namespace: str) -> None:
    pod = {
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "fake", "image": "fake-image:1"}],
    }
    batch.create_namespaced_job(namespace, indexed_job("fanout", 100, pod, parallelism=50))
    assert wait_for(lambda: job_condition(batch, namespace, "fanout"), 180, "Job fanout to finish") == "Complete"
    job = batch.read_namespaced_job_status("fanout", namespace)
    assert job.status.succeeded == 100
    assert job.status.completed_indexes == "0-99"


def test_deleting_a_running_pod_stops_its_process_and_removes_it(core: client.CoreV1Api, namespace: str) -> None:
    marker = f"/tmp/paraflow-test-{namespace}.alive"
    script = f"import pathlib, time\nwhile True:\n    pathlib.Path({marker!r}).touch()\n    time.sleep(0.2)\n"
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "long"},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"kubernetes.io/hostname": PODRUNNER_NODE},
                "containers": [{"name": "main", "image": "python:3.11", "command": ["python", "-c", script]}],
            },
        },
    )
    wait_for(lambda: core.read_namespaced_pod("long", namespace).status.phase == "Running", 60, "pod to run")
    core.delete_namespaced_pod("long", namespace)

    def gone() -> bool:
        return not [p for p in core.list_namespaced_pod(namespace).items if p.metadata.name == "long"]

    wait_for(gone, 30, "the pod object to be removed")
    import os
    import time

    stamp = os.path.getmtime(marker)
    time.sleep(1)
    assert os.path.getmtime(marker) == stamp, "the pod's process still runs"
    os.remove(marker)


def test_the_demos_operator_is_stopped_while_the_suite_runs_its_own() -> None:
    """`make demo` leaves its operator running; were it still running, two operators would act on
    every test workflow (a newcomer's `make test` after `make demo` failed that way)."""
    script = Path(__file__).resolve().parents[2] / "hack" / "cluster.sh"
    status = subprocess.run([str(script), "status"], capture_output=True, text=True, check=False).stdout
    assert "kube-apiserver: running" in status, status  # this is the cluster the suite runs on
    assert "operator: running" not in status, status
