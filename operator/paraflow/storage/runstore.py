"""The operator's view of a workflow's run prefix in MinIO.

Calls are synchronous (minio-py); the reconciler runs them in its thread pool. Connection
problems raise :class:`StorageUnavailable`, which the reconciler reports as a retryable
``Blocked`` condition; a missing or malformed plan is the user's problem and comes back as a
:class:`PlanRead` error that fails the workflow with a clear reason.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error
from pydantic import ValidationError

from paraflow.models import Location
from paraflow.planning.planner import PlanRead, ReplicationTally
from paraflow.reasons import Reason
from paraflow_worker import contract, identity
from paraflow_worker.contract import ManifestPartition, PlanSummary, ReplicationReport, ResultManifest
from paraflow_worker.storage import get_json, make_client, put_json

# Deleted keys named in the Event; the reports list every one.
DELETIONS_NAMED = 10


class StorageUnavailable(Exception):
    """MinIO could not be reached or refused our credentials; worth retrying later."""

    reason = Reason.STORAGE_UNAVAILABLE


class UnsafeSpec(Exception):
    """The spec is valid on paper but would harm data on the storage as it really is."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Credentials:
    endpoint: str
    access_key: str
    secret_key: str
    region: str | None = None


def client_for(creds: Credentials, timeout_seconds: float, pool_size: int) -> Minio:
    # Short timeouts and few retries: a pass must not hang on a dead endpoint; the next pass retries.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(5.0, timeout_seconds), read=timeout_seconds),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        # As many connections as threads that may use them ("Connection pool is full" otherwise).
        maxsize=pool_size,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
    return make_client(creds.endpoint, creds.access_key, creds.secret_key, region=creds.region, http_client=http)


def preflight(client: Minio, endpoint: str, buckets: list[str]) -> None:
    """Before anything starts: the endpoint answers, the credentials work, the buckets exist."""
    for bucket in dict.fromkeys(buckets):
        try:
            exists = client.bucket_exists(bucket)
        except S3Error as e:
            raise StorageUnavailable(f"MinIO refused access to bucket {bucket!r}: {e.code}") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise StorageUnavailable(f"cannot reach MinIO at {endpoint}: {_cause(e)}") from e
        if not exists:
            raise StorageUnavailable(f"bucket {bucket!r} does not exist")


def preflight_destination(
    source: Minio, destination: Minio, output: Location, *, run: str, target: contract.ReplicationTarget
) -> None:
    """A replication destination's bucket exists, and it is not the output under another name."""
    try:
        token = identity.ensure_token(source, output.bucket, run)
    except S3Error as e:
        raise StorageUnavailable(f"writing s3://{output.bucket}/{contract.identity_key(run)}: {e.code}") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise StorageUnavailable(f"cannot reach MinIO: {_cause(e)}") from e
    try:
        exists = destination.bucket_exists(target.bucket)
    except S3Error as e:
        if e.code != "AccessDenied":
            raise StorageUnavailable(f"replication destination {target.name!r}: {e.code}") from e
        # Credentials that may write but not look (a write-only key): the copies will tell, and
        # each failure is recorded with its reason.
        exists = True
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise StorageUnavailable(
            f"replication destination {target.name!r}: cannot reach {target.endpoint}: {_cause(e)}"
        ) from e
    if not exists:
        raise StorageUnavailable(f"replication destination {target.name!r}: bucket {target.bucket!r} does not exist")
    storage = identity.compare(destination, output.bucket, run, token=token)
    problem = identity.overlap_error(target, output.bucket, output.prefix, storage=storage)
    if problem is not None:
        raise UnsafeSpec(Reason.DESTINATION_IS_OUTPUT, problem)


def _cause(error: BaseException) -> str:
    """The innermost reason (e.g. 'Connection refused'), not urllib3's retry wrapper."""
    while error.__cause__ is not None or getattr(error, "reason", None) is not None:
        nxt = error.__cause__ or getattr(error, "reason", None)
        if not isinstance(nxt, BaseException):
            break
        error = nxt
    return str(error).split(": ", 1)[-1] if "Errno" in str(error) else str(error)


def read_plan(client: Minio, bucket: str, run: str) -> PlanRead:
    key = contract.plan_key(run)
    try:
        summary = get_json(client, bucket, key, model=PlanSummary)
    except S3Error as e:
        if e.code in ("NoSuchKey", "NoSuchBucket"):
            return PlanRead(
                error_reason=Reason.PLAN_MISSING,
                error_message=f"the partitioner finished but wrote no plan at s3://{bucket}/{key}",
            )
        if e.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StorageUnavailable(f"MinIO refused to read s3://{bucket}/{key}: {e.code}") from e
        raise StorageUnavailable(f"reading s3://{bucket}/{key}: {e.code}: {e.message}") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        return PlanRead(
            error_reason=Reason.INVALID_PLAN,
            error_message=f"s3://{bucket}/{key} is not a valid plan: {where}: {first['msg']}",
        )
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise StorageUnavailable(f"cannot reach MinIO: {_cause(e)}") from e
    if summary.problem is not None:  # the input itself cannot be partitioned: final
        return PlanRead(error_reason=summary.problem.reason, error_message=summary.problem.message)
    return PlanRead(partition_count=summary.partition_count)


def write_manifest(
    client: Minio,
    bucket: str,
    run: str,
    *,
    workflow: str,
    namespace: str,
    uid: str,
    succeeded: list[tuple[int, int]],
    failed: list[int],
) -> str:
    manifest = ResultManifest(
        workflow=workflow,
        namespace=namespace,
        uid=uid,
        bucket=bucket,
        succeeded=[
            ManifestPartition(index=p, attempt=a, results_prefix=contract.results_prefix(run, p, a))
            for p, a in succeeded
        ],
        failed=failed,
    )
    key = contract.manifest_key(run)
    try:
        put_json(client, bucket, key, doc=manifest)
    except S3Error as e:
        raise StorageUnavailable(f"writing s3://{bucket}/{key}: {e.code}: {e.message}") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise StorageUnavailable(f"cannot reach MinIO: {_cause(e)}") from e
    return f"s3://{bucket}/{key}"


def kept_logs(client: Minio, bucket: str, run: str) -> set[str]:
    """The Jobs whose pods' logs are stored in the run's prefix (one folder each)."""
    prefix = contract.logs_prefix(run)
    try:
        return {o.object_name[len(prefix) :].rstrip("/") for o in client.list_objects(bucket, prefix=prefix)}
    except S3Error as e:
        raise StorageUnavailable(f"listing s3://{bucket}/{prefix}: {e.code}: {e.message}") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise StorageUnavailable(f"cannot reach MinIO: {_cause(e)}") from e


def keep_pod_log(client: Minio, bucket: str, key: str, *, data: bytes, metadata: dict[str, str]) -> None:
    try:
        client.put_object(
            bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type="text/plain; charset=utf-8",
            metadata={f"paraflow-{k}": v for k, v in metadata.items()},
        )
    except S3Error as e:
        raise StorageUnavailable(f"writing s3://{bucket}/{key}: {e.code}: {e.message}") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise StorageUnavailable(f"cannot reach MinIO: {_cause(e)}") from e


def reduce_record_problem(client: Minio, bucket: str, run: str, *, attempt: int) -> str:
    """Why a succeeded reduce attempt's record cannot be used ('' when it can): the run-wide copy
    and `paraflow reduce-output` follow it to the step's outputs."""
    key = contract.reduce_result_key(run, attempt)
    try:
        record = get_json(client, bucket, key, model=contract.ReduceResult)
    except S3Error as e:
        if e.code == "NoSuchKey":
            return f"it wrote no record at s3://{bucket}/{key}"
        raise StorageUnavailable(f"reading s3://{bucket}/{key}: {e.code}: {e.message}") from e
    except ValidationError as e:
        return f"s3://{bucket}/{key} is not a valid record: {e.errors()[0]['msg']}"
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise StorageUnavailable(f"cannot reach MinIO: {_cause(e)}") from e
    if record.attempt != attempt:
        return f"s3://{bucket}/{key} names attempt {record.attempt}"
    return ""


def read_replication_tally(client: Minio, bucket: str, run: str, *, label: str) -> ReplicationTally:
    """Sums the reports of one replication Job's pods; a pod that died before reporting says so."""
    copied = size = skipped = failed = deleted = 0
    first = ""
    deletions: list[str] = []
    prefix = contract.replication_reports_prefix(run, label)
    try:
        keys = [o.object_name or "" for o in client.list_objects(bucket, prefix=prefix)]
        reports = [get_json(client, bucket, key, model=ReplicationReport) for key in keys]
    except S3Error as e:
        raise StorageUnavailable(f"reading replication reports under s3://{bucket}/{prefix}: {e.code}") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise StorageUnavailable(f"cannot reach MinIO: {_cause(e)}") from e
    for report in reports:
        for target in report.targets:
            copied, size, skipped = copied + target.copied, size + target.bytes, skipped + target.skipped
            failed, deleted = failed + target.failed, deleted + target.deleted
            deletions += [f"{target.name}:{key!r}" for key in target.deleted_keys[: DELETIONS_NAMED - len(deletions)]]
            if target.failures and not first:
                first = f"{target.name}: {target.failures[0].key}: {target.failures[0].reason}"
    if not reports:
        first = "no report: the replication pod failed before writing one (see its logs)"
    return ReplicationTally(
        copied=copied,
        bytes=size,
        skipped=skipped,
        failed=failed,
        deleted=deleted,
        first_failure=first,
        deletions=tuple(deletions),
        reports=f"s3://{bucket}/{prefix}",
    )
