"""MinIO/S3 access for pods: a client from the contract's env vars and small JSON helpers."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import Tags
from minio.deleteobjects import DeleteObject
from pydantic import BaseModel

from paraflow_worker.contract import Env

M = TypeVar("M", bound=BaseModel)


def make_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    region: str | None = None,
    http_client: urllib3.PoolManager | None = None,
) -> Minio:
    """``endpoint`` is a URL (``http://host:port``); its scheme decides TLS."""
    url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not url.hostname:
        raise ValueError(f"storage endpoint {endpoint!r} has no host")
    return Minio(
        url.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=url.scheme == "https",
        region=region or None,
        http_client=http_client,
    )


def client_from_env(connections: int = 10) -> Minio:
    """The pod's client, with a connection for each of ``connections`` threads (urllib3 discards
    and reopens one past its pool's size: a new connection per request)."""
    http = urllib3.PoolManager(  # minio-py's own defaults, but the pool's size
        maxsize=connections,
        timeout=urllib3.Timeout(connect=300, read=300),
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    try:
        return make_client(
            os.environ[Env.S3_ENDPOINT],
            os.environ[Env.S3_ACCESS_KEY],
            os.environ[Env.S3_SECRET_KEY],
            region=os.environ.get(Env.S3_REGION),
            http_client=http,
        )
    except KeyError as e:
        raise SystemExit(f"paraflow-worker: missing env var {e.args[0]} (set by the operator)") from e


class HashingReader(io.RawIOBase):
    """Passes reads through while hashing and counting them: an upload or copy is hashed in the
    same single pass that moves its bytes."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = self.inner.read(-1 if size is None else size)
        self.sha256.update(chunk)
        self.size += len(chunk)
        return chunk


def object_tags(values: dict[str, str] | None) -> Tags | None:
    """minio-py's object Tags from a plain dict; None for no tags."""
    if not values:
        return None
    tags = Tags.new_object_tags()
    tags.update(values)
    return tags


def put_json(client: Minio, bucket: str, key: str, *, doc: BaseModel | dict[str, Any]) -> None:
    data = (doc.model_dump_json(by_alias=True) if isinstance(doc, BaseModel) else json.dumps(doc)).encode()
    put_bytes(client, bucket, key, data=data)


def put_bytes(client: Minio, bucket: str, key: str, *, data: bytes) -> None:
    """A JSON document already serialised."""
    client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="application/json")


def get_json(client: Minio, bucket: str, key: str, *, model: type[M]) -> M:
    response = client.get_object(bucket, key)
    try:
        return model.model_validate_json(response.read())
    finally:
        response.close()
        response.release_conn()


def remove_prefix(client: Minio, bucket: str, prefix: str) -> int:
    """Removes every object under ``prefix`` (1,000 to a request, as S3 allows); how many went.
    Raises on the first object refused, so nothing is reported gone that is not."""
    keys = (
        DeleteObject(obj.object_name)
        for obj in client.list_objects(bucket, prefix=prefix, recursive=True)
        if obj.object_name
    )
    removed = 0
    batch: list[DeleteObject] = []
    for key in keys:
        batch.append(key)
        if len(batch) == 1000:
            removed += _remove(client, bucket, batch)
            batch = []
    if batch:
        removed += _remove(client, bucket, batch)
    return removed


def _remove(client: Minio, bucket: str, batch: list[DeleteObject]) -> int:
    for error in client.remove_objects(bucket, batch):
        raise OSError(f"cannot remove s3://{bucket}/{error.name}: {error.code}: {error.message}")
    return len(batch)
