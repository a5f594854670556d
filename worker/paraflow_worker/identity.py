"""Is a replication destination this run's own storage under another name?

Endpoint strings cannot tell: ``http://localhost:9000``, ``http://127.0.0.1:9000`` and a Service
DNS name can all be one MinIO server. So the run leaves a token in its run prefix, and a
destination's client tries to read it back from the output bucket: if it reads the same token,
the destination client talks to the very storage that holds the run's outputs and records.
The token is the run prefix itself (the workflow uid is in it): every writer writes the same
bytes, so concurrent writers (the operator's preflight, each replication pod) cannot race into
comparing different tokens. Only a copy of this very object could make another server look the
same, and that errs on the safe side: refusing.

Copying (and above all deleting) into a destination that is, in fact, the output prefix would
destroy the run's own data, so an answer that cannot be had (access refused) counts as "same".
"""

from __future__ import annotations

import io
from enum import Enum

import urllib3
from minio import Minio
from minio.error import S3Error

from paraflow_worker import contract

NOT_THERE = ("NoSuchKey", "NoSuchBucket")


class Storage(Enum):
    SAME = "same"
    OTHER = "other"
    UNKNOWN = "unknown"


def _read(client: Minio, bucket: str, key: str) -> str | None:
    """The token at ``key``, or None if the object (or bucket) does not exist there."""
    try:
        response = client.get_object(bucket, key)
    except S3Error as e:
        if e.code in NOT_THERE:
            return None
        raise
    try:
        return response.read(8192).decode(errors="replace")
    finally:
        response.close()
        response.release_conn()


def ensure_token(source: Minio, bucket: str, run: str) -> str:
    """The run's token, written if absent (or unlike what it must be)."""
    key = contract.identity_key(run)
    token = f"paraflow run {run}"
    if _read(source, bucket, key) != token:
        data = token.encode()
        source.put_object(bucket, key, io.BytesIO(data), len(data), content_type="text/plain")
    return token


def compare(destination: Minio, bucket: str, run: str, *, token: str) -> Storage:
    """Whether ``destination`` sees the run's token in the output ``bucket``."""
    try:
        seen = _read(destination, bucket, contract.identity_key(run))
    except S3Error:
        return Storage.UNKNOWN
    except (urllib3.exceptions.HTTPError, OSError):
        return Storage.UNKNOWN
    if seen is None:
        return Storage.OTHER
    return Storage.SAME if seen == token else Storage.OTHER


def prefixes_overlap(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def overlap_error(
    destination: contract.ReplicationTarget, output_bucket: str, output_prefix: str, *, storage: Storage
) -> str | None:
    """Why copying to ``destination`` would write into the output itself, or None if it cannot."""
    if destination.bucket != output_bucket or not prefixes_overlap(destination.prefix, output_prefix):
        return None
    if storage is Storage.OTHER:
        return None
    how = "is" if storage is Storage.SAME else "cannot be proven not to be"
    return (
        f"replication destination {destination.name!r} ({destination.endpoint}, bucket {destination.bucket!r}, "
        f"prefix {destination.prefix!r}) {how} the storage holding the output prefix {output_prefix!r}: copying "
        "there (and deleteSync above all) would overwrite or delete the run's own data; use another bucket or a "
        "prefix outside the output prefix"
    )
