"""The floor of the Job-per-partition design: the least any orchestrator that runs one Job per
partition can cost on this cluster.

A short driver, not the operator: it keeps ``concurrency`` one-pod Jobs active and creates the
next one as soon as its watch sees one finish. No status, no records, no retries, no Events:
what remains is the Job objects themselves and the Job controller's work on them, which paraflow
cannot avoid either. paraflow's makespan over this one is its own overhead.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client, watch

LABEL = "bench.paraflow.dev/floor"


def job(name: str, run: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {LABEL: run}},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", **pod, "containers": [{"name": "c", "image": "fake:1"}]}},
        },
    }


def finished(obj: client.V1Job) -> bool:
    return any(x.type in ("Complete", "Failed") and x.status == "True" for x in (obj.status.conditions or []))


def run(batch: client.BatchV1Api, ns: str, partitions: int, concurrency: int, pod: dict[str, Any]) -> float:
    """Seconds from the first create to the last Job finished."""
    tag = f"f{partitions}-{concurrency}"
    names = (f"{tag}-{i}" for i in range(partitions))
    started = time.monotonic()
    created = 0
    for name in names:
        batch.create_namespaced_job(ns, job(name, tag, pod))
        created += 1
        if created == min(concurrency, partitions):
            break
    done: set[str] = set()
    stream = watch.Watch()
    for event in stream.stream(batch.list_namespaced_job, ns, label_selector=f"{LABEL}={tag}", timeout_seconds=7200):
        obj = event["object"]
        if event["type"] == "DELETED" or obj.metadata.name in done or not finished(obj):
            continue
        done.add(obj.metadata.name)
        if created < partitions:
            batch.create_namespaced_job(ns, job(next(names), tag, pod))
            created += 1
        if len(done) == partitions:
            stream.stop()
    return time.monotonic() - started
