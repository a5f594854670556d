"""Helpers to create, watch and inspect ParallelWorkflows in tests."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from minio import Minio

from paraflow import constants as c
from tests.support import wait_for

WORKER_IMAGE = "paraflow/worker:0.1.0"
CHECKSUM = ["python", "-m", "paraflow_worker.demo.checksum"]


def workflow(name: str, endpoint: str, bucket: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": c.KIND,
        "metadata": {"name": name},
        "spec": {
            "storage": {"endpoint": endpoint, "credentialsSecret": "minio-creds"},
            "input": {"bucket": bucket, "prefix": "input/"},
            "partitioner": {"builtin": {"maxItemsPerPartition": 3}},
            "processor": {"image": WORKER_IMAGE, "command": CHECKSUM},
            "output": {"bucket": bucket, "prefix": "output/"},
            "retry": {"maxAttempts": 2, "intervalSeconds": 1, "jitter": "none"},
        },
    }
    body["spec"].update(spec)
    return body


def run_generator(script: Path, test_env: dict[str, str], *args: str) -> None:
    """Runs an example's data generator against the test MinIO, as a user would from a shell."""
    env = {
        **os.environ,
        "PARAFLOW_S3_ACCESS_KEY": test_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
        "PARAFLOW_S3_SECRET_KEY": test_env["PARAFLOW_TEST_S3_SECRET_KEY"],
    }
    endpoint = test_env["PARAFLOW_TEST_S3_ENDPOINT"]
    subprocess.run([sys.executable, str(script), "--endpoint", endpoint, *args], check=True, env=env)


def upload_inputs(s3: Minio, bucket: str, count: int, prefix: str = "input/") -> dict[str, bytes]:
    written = {}
    for i in range(count):
        data = (f"line {i}\n" * (i % 7 + 1)).encode()
        key = f"{prefix}{i:05d}.log"
        s3.put_object(bucket, key, io.BytesIO(data), len(data))
        written[key] = data
    return written


def get(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name)
    return obj


def create(custom: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, body)
    return obj


def patch(custom: client.CustomObjectsApi, ns: str, name: str, body: dict[str, Any]) -> None:
    custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name, body)


def wait_phase(
    custom: client.CustomObjectsApi, ns: str, name: str, phases: set[str], timeout: float, on_poll: Any = None
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        if on_poll is not None:
            on_poll()
        obj = get(custom, ns, name)
        return obj if (obj.get("status") or {}).get("phase") in phases else None

    try:
        return wait_for(check, timeout, f"workflow {ns}/{name} to reach {sorted(phases)}", interval=0.3)
    except AssertionError as e:
        raise AssertionError(f"{e}\nstatus: {get(custom, ns, name).get('status')}") from e


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((x for x in (obj.get("status") or {}).get("conditions", []) if x["type"] == type_), None)


def events(core: client.CoreV1Api, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return [(e.type, e.reason, e.message) for e in items]


def wait_event(core: client.CoreV1Api, ns: str, name: str, kind: str, reason: str, timeout: float = 30) -> None:
    """Events are posted just after the status they report: wait for one rather than race it."""
    wait_for(
        lambda: (kind, reason) in {(t, r) for t, r, _ in events(core, ns, name)},
        timeout,
        f"a {kind} Event {reason} on {ns}/{name}",
    )


def partition_jobs(batch: client.BatchV1Api, ns: str, name: str) -> list[client.V1Job]:
    selector = f"{c.LABEL_WORKFLOW}={name},{c.LABEL_ROLE}={c.ROLE_PARTITION}"
    return list(batch.list_namespaced_job(ns, label_selector=selector).items)


def active_count(jobs: list[client.V1Job]) -> int:
    def finished(j: client.V1Job) -> bool:
        return any(x.status == "True" and x.type in ("Complete", "Failed") for x in (j.status.conditions or []))

    return sum(1 for j in jobs if not finished(j))


@contextmanager
def partition_job_creations(batch: client.BatchV1Api, ns: str, name: str) -> Iterator[dict[str, set[str]]]:
    """Every partition Job of a workflow ever created while the block runs, by name -> uids: a
    watch misses none, even of Jobs deleted since (succeededJobs: Delete)."""
    created: dict[str, set[str]] = {}
    stream = watch.Watch()
    selector = f"{c.LABEL_WORKFLOW}={name},{c.LABEL_ROLE}={c.ROLE_PARTITION}"
    broken: list[Exception] = []
    finished = threading.Event()

    def record() -> None:
        try:
            for event in stream.stream(batch.list_namespaced_job, ns, label_selector=selector, timeout_seconds=600):
                job = event["object"]
                created.setdefault(job.metadata.name, set()).add(job.metadata.uid)
        except Exception as e:  # a watch that broke mid-run could have missed a creation
            if not finished.is_set():
                broken.append(e)

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    yield created
    finished.set()
    stream.stop()
    assert not broken, f"the watch of Job creations broke: {broken}"
