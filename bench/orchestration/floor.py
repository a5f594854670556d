"""The floor of the Job-per-partition design: the least any orchestrator that runs one Job per
partition can cost on this cluster.

A short driver, not the operator: it keeps ``concurrency`` one-pod Jobs active and creates the
next one as soon as its watch sees one finish. No status, no records, no retries, no Events:
what remains is the Job objects themselves and the Job controller's work on them, which paraflow
cannot avoid either. paraflow's makespan over this one is its own overhead.

With ``--spec`` (a workflow's spec) it creates the Jobs paraflow's operator would (its builder's Indexed
Job: per-index backoff, pod failure policy, replacement policy, the worker's environment and
security context), without their ownerReference to a workflow that does not exist here. The
difference between the two shapes is what paraflow's Job features cost the control plane; the
difference between that row and paraflow's is the operator's own.

Run as its own process (``python -m bench.orchestration.floor NS PARTITIONS CONCURRENCY
TASK_SECONDS [--spec JSON]``) so that its memory and CPU are its own; it prints one
JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from bench.orchestration.kwok import KWOK, pod_metadata
from paraflow.k8s.builders import WorkflowRef, partition_job
from paraflow.models import WorkflowSpec
from paraflow.settings import Settings

LABEL = "bench.paraflow.dev/floor"
Shape = Callable[[str, str, float], dict[str, Any]]


def job(name: str, run: str, task_seconds: float) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {LABEL: run}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": pod_metadata(task_seconds),
                "spec": {"restartPolicy": "Never", **KWOK, "containers": [{"name": "c", "image": "fake:1"}]},
            },
        },
    }


def paraflow_shaped(spec: dict[str, Any], namespace: str) -> Shape:
    """Jobs as paraflow's operator builds them for ``spec`` (a workflow spec), one per index."""
    model = WorkflowSpec.model_validate(spec)
    settings = Settings()
    index = itertools.count()

    def shaped(name: str, run: str, task_seconds: float) -> dict[str, Any]:
        body = partition_job(
            WorkflowRef(run, namespace, f"floor-{run}"), model, next(index), attempt=1, settings=settings
        )
        body["metadata"]["name"] = name
        body["metadata"]["labels"][LABEL] = run
        del body["metadata"]["ownerReferences"]  # no workflow exists: the GC would delete them
        return body

    return shaped


def finished(obj: client.V1Job) -> bool:
    return any(x.type in ("Complete", "Failed") and x.status == "True" for x in (obj.status.conditions or []))


def run(
    batch: client.BatchV1Api, ns: str, partitions: int, concurrency: int, task_seconds: float, shape: Shape = job
) -> float:
    """Seconds from the first create to the last Job finished."""
    tag = f"f{partitions}-{concurrency}"
    names = (f"{tag}-{i}" for i in range(partitions))
    started = time.monotonic()
    created = 0
    for name in names:
        batch.create_namespaced_job(ns, shape(name, tag, task_seconds))
        created += 1
        if created == min(concurrency, partitions):
            break
    done: set[str] = set()
    # The apiserver closes a watch whose reader falls behind (this one creates a Job per event),
    # and the client then ends the stream as if the run were over: watch again from the last
    # event seen until every Job has finished. 2026-11-29/30, before this: rows of 13.5 s for
    # 10,000 Jobs.
    version = ""
    while len(done) < partitions:
        stream = watch.Watch()
        try:
            for event in stream.stream(
                batch.list_namespaced_job,
                ns,
                label_selector=f"{LABEL}={tag}",
                resource_version=version,
                timeout_seconds=600,
            ):
                obj = event["object"]
                version = obj.metadata.resource_version
                if event["type"] == "DELETED" or obj.metadata.name in done or not finished(obj):
                    continue
                done.add(obj.metadata.name)
                if created < partitions:
                    batch.create_namespaced_job(ns, shape(next(names), tag, task_seconds))
                    created += 1
                if len(done) == partitions:
                    stream.stop()
        except client.ApiException as e:
            if e.status != 410:
                raise
            version = ""  # too old: list again (finished Jobs already counted are skipped)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="the floor of Job-per-partition, one run")
    parser.add_argument("namespace")
    parser.add_argument("partitions", type=int)
    parser.add_argument("concurrency", type=int)
    parser.add_argument("task_seconds", type=float)
    parser.add_argument("--spec", help="a workflow spec as JSON: create the Jobs paraflow would for it")
    args = parser.parse_args()
    config.load_kube_config()  # type: ignore[no-untyped-call]
    shape = paraflow_shaped(json.loads(args.spec), args.namespace) if args.spec else job
    makespan = run(client.BatchV1Api(), args.namespace, args.partitions, args.concurrency, args.task_seconds, shape)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Not ru_maxrss: Linux keeps it across exec, so it would report the runner's own peak.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(
        json.dumps(
            {
                "makespan_s": round(makespan, 1),
                "writes_per_item": 1.0,  # one create per partition, by construction
                "controller_peak_rss_mib": round(peak_kib / 1024, 1),
                "controller_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
