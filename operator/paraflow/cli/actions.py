"""What the CLI's commands do to a workflow, and what they read of it, without printing: the
terminal (``paraflow.cli.app``) and the Map Run view (``paraflow.ui``) both call these, so a
button in the view does exactly what its command does."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paraflow import constants as c
from paraflow.cli import kube
from paraflow.cli.keptlogs import KeptLog
from paraflow.k8s import names
from paraflow.planning import indexsets

if TYPE_CHECKING:
    from minio import Minio

    from paraflow.models import WorkflowSpec
    from paraflow_worker.contract import ResultManifest


class NotFound(LookupError):
    """What was asked for does not exist (yet, or any more); the message says which and why."""


class InvalidSpec(ValueError):
    """The workflow's spec is not one the operator would run; the message names the field."""


def suspend(name: str, namespace: str) -> str:
    kube.patch_workflow(name, namespace, {"spec": {"suspend": True}})
    return f"{namespace}/{name} suspended"


def resume(name: str, namespace: str) -> str:
    kube.patch_workflow(name, namespace, {"spec": {"suspend": False}})
    return f"{namespace}/{name} resumed"


def set_concurrency(name: str, namespace: str, limit: int) -> str:
    kube.patch_workflow(name, namespace, {"spec": {"maxConcurrency": limit}})
    return f"{namespace}/{name}: maxConcurrency {limit}"


@dataclass(frozen=True)
class Redrive:
    """How the operator answered a redrive: taken, refused (its Event says why) or not at all."""

    answered: bool
    taken: bool
    message: str


def redrive(name: str, namespace: str, *, timeout: float) -> Redrive:
    """Asks for a redrive (the paraflow.dev/redrive annotation, a fresh token) and waits for the
    operator to take it or refuse it."""
    before = (kube.get_workflow(name, namespace).get("status") or {}).get("redrive") or {}
    token = time.strftime("%Y%m%dT%H%M%S") + f".{time.time_ns() % 1_000_000:06d}"
    kube.patch_workflow(name, namespace, {"metadata": {"annotations": {c.ANNOTATION_REDRIVE: token}}})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = kube.get_workflow(name, namespace).get("status") or {}
        seen = status.get("redrive") or {}
        if seen.get("lastToken") == token:
            if int(seen.get("count") or 0) > int(before.get("count") or 0):
                return Redrive(
                    True, True, f"redrive #{seen['count']} of {namespace}/{name} started: phase {status.get('phase')}"
                )
            why = next(
                (m for m in reversed(kube.workflow_events(name, namespace, "RedriveIgnored")) if token in m),
                "refused by the operator",
            )
            return Redrive(True, False, why)
        time.sleep(0.5)
    return Redrive(
        False,
        False,
        f"the operator has not taken redrive {token} within {timeout:.0f}s: is it running? "
        "(the annotation stays; it applies when the operator is back)",
    )


def failures(wf: kube.Doc, *, most: int = 20) -> dict[int, str]:
    """Why the first ``most`` failed partitions failed: their latest Job's pod exit code and
    reason (one list of the workflow's Jobs, then one of pods per failed partition shown)."""
    name, namespace = wf["metadata"]["name"], wf["metadata"]["namespace"]
    failed = indexsets.expand((wf.get("status") or {}).get("failedIndexes", ""))
    if not failed:
        return {}
    latest: dict[int, tuple[int, kube.Doc]] = {}
    for job in kube.partition_jobs(name, namespace):
        index, attempt = int(kube.labels(job)[c.LABEL_PARTITION]), int(kube.labels(job)[c.LABEL_ATTEMPT])
        if index in failed and attempt > latest.get(index, (0, {}))[0]:
            latest[index] = (attempt, job)
    return {i: kube.failure_of(job, namespace) for i, (_, job) in sorted(latest.items())[:most]}


@dataclass(frozen=True)
class Logs:
    """A partition's (or the reduce step's) pod logs: live from the pods while they exist, else the
    copies the operator kept."""

    what: str
    live: list[tuple[str, str]]
    kept: list[KeptLog]


def logs(
    wf: kube.Doc,
    *,
    partition: int | None,
    shard: int | None = None,
    attempt: int | None = None,
    kept_only: bool = False,
    endpoint: str | None = None,
) -> Logs:
    """The logs of ``partition`` (its latest attempt unless ``attempt``), or of the reduce step
    with ``partition=None``. Raises NotFound saying why there is nothing to show."""
    name, namespace = wf["metadata"]["name"], wf["metadata"]["namespace"]
    if partition is None:
        reduced = (wf.get("status") or {}).get("reduce") or {}
        if attempt is None and not reduced:
            raise NotFound(f"the reduce step of {name} has not started")
        attempt = attempt or int(reduced.get("attempt", 1))
        job, what = names.reduce_job(name, attempt), f"the reduce step attempt {attempt}"
    else:
        if attempt is None:
            attempts = [
                int(kube.labels(j)[c.LABEL_ATTEMPT])
                for j in kube.partition_jobs(name, namespace)
                if kube.labels(j).get(c.LABEL_PARTITION) == str(partition)
            ]
            attempt = max(attempts) if attempts else recorded_attempt(wf, partition)
            if attempt is None:
                raise NotFound(no_partition_job(wf, partition))
        job, what = names.partition_job(name, partition, attempt), f"partition {partition} attempt {attempt}"
    live = [] if kept_only else kube.pod_logs(job, namespace, shard)
    if live:
        return Logs(what, live, [])
    copies = kept_logs(wf, job=job, shard=shard, endpoint=endpoint)
    if not copies and kept_only:
        raise NotFound(f"no logs of {what} kept (spec.logs.keep)")
    if not copies:
        why = no_partition_job(wf, partition) if partition is not None else ""
        raise NotFound(why or f"no pods for {what}, and no logs of them kept (spec.logs.keep)")
    return Logs(what, [], copies)


def no_partition_job(wf: kube.Doc, partition: int) -> str:
    """Why a partition has no Job and no kept logs: not started, or succeeded and deleted."""
    status = wf.get("status") or {}
    if partition in indexsets.expand(status.get("succeededIndexes", "")):
        return (
            f"partition {partition} of {wf['metadata']['name']} succeeded and its Job was deleted "
            "(succeededJobs: Delete) with its pods; their logs are kept with spec.logs.keep: all; "
            "its outputs are in `paraflow results`"
        )
    if partition in indexsets.expand(status.get("failedIndexes", "")):
        return f"the pods of partition {partition} of {wf['metadata']['name']} are gone, and no logs of them were kept"
    return f"partition {partition} of {wf['metadata']['name']} has not started"


def recorded_attempt(wf: kube.Doc, partition: int) -> int | None:
    """The partition's latest attempt as its workflow's status records it (its Jobs may be gone)."""
    status = wf.get("status") or {}
    started = indexsets.expand(status.get("succeededIndexes", "")) | indexsets.expand(status.get("failedIndexes", ""))
    attempts = [int(a) for a, found in (status.get("attempts") or {}).items() if partition in indexsets.expand(found)]
    if attempts:
        return max(attempts)
    return 1 if partition in started else None


def spec_of(wf: kube.Doc) -> WorkflowSpec:
    """The workflow's spec as the operator reads it; InvalidSpec naming the first bad field."""
    from pydantic import ValidationError

    from paraflow.models import WorkflowSpec, spec_error

    try:
        return WorkflowSpec.model_validate(wf.get("spec") or {})
    except ValidationError as e:
        raise InvalidSpec(spec_error(e)) from e


def storage_client(spec: WorkflowSpec, namespace: str, endpoint: str | None) -> Minio:
    """MinIO as the workflow sees it, with env PARAFLOW_S3_ACCESS_KEY/SECRET_KEY, else its Secret
    (read through the API as the user)."""
    from paraflow_worker.storage import make_client

    access, secret = os.environ.get("PARAFLOW_S3_ACCESS_KEY"), os.environ.get("PARAFLOW_S3_SECRET_KEY")
    if not access or not secret:
        kube.load()
        creds = kube.read_secret(namespace, spec.storage.credentials_secret)
        access, secret = creds["accessKey"], creds["secretKey"]
    return make_client(endpoint or spec.storage.endpoint, access, secret, region=spec.storage.region)


def kept_logs(wf: kube.Doc, *, job: str, shard: int | None, endpoint: str | None) -> list[KeptLog]:
    """The logs the operator kept of ``job``'s pods (one shard's, with ``shard``)."""
    from paraflow_worker import contract

    spec = spec_of(wf)
    client = storage_client(spec, wf["metadata"]["namespace"], endpoint)
    run = contract.run_prefix(spec.output.prefix, wf["metadata"]["uid"])
    folder = contract.pod_log_key(run, job, "")[: -len(".log")]
    found = []
    for obj in client.list_objects(spec.output.bucket, prefix=folder):
        pod = obj.object_name[len(folder) :].removesuffix(".log")
        if shard is not None and not pod.startswith(f"{job}-{shard}-"):
            continue
        response = client.get_object(spec.output.bucket, obj.object_name)
        try:
            found.append(KeptLog.read(pod, response.read(), response.headers))
        finally:
            response.close()
            response.release_conn()
    return sorted(found, key=lambda k: k.pod)


def read_manifest(client: Minio, where: str) -> tuple[str, ResultManifest]:
    """The bucket and content of the result manifest at ``where`` (status.manifest,
    ``s3://<bucket>/<key>``)."""
    from paraflow_worker import contract
    from paraflow_worker.storage import get_json

    bucket, _, key = where.removeprefix("s3://").partition("/")
    return bucket, get_json(client, bucket, key, model=contract.ResultManifest)
