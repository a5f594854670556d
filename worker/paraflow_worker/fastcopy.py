"""Cross-server copies on obstore (Rust's ``object_store``): the hot path of replication.

A streaming copy through minio-py costs about 1.1 ms of Python CPU per small object (request
building, signing, a sha256 of every payload for plain-http signing, urllib3), on the same cores
as the servers; obstore does the requests off the GIL and sends ``UNSIGNED-PAYLOAD``, which MinIO
accepts over plain http. paraflow still hashes every byte once, against the run's record:

- an object up to ``WHOLE_MAX`` is read whole, checked, then written in one PUT: a mismatch
  writes nothing;
- a larger one streams through in parts of ``PART`` bytes, ``PARTS_IN_FLIGHT`` uploaded at once
  (so about ``(PARTS_IN_FLIGHT + 2) x PART`` in memory with the part being read and the one being
  filled), and the check runs before the last part is handed over, so a mismatch aborts the
  multipart upload: a corrupted byte never becomes a replica.

``object_store`` parses keys as paths: it refuses ASCII control characters and ``//`` and drops a
trailing ``/``. :func:`carries` tells which copies it makes exactly as minio-py would (keys
unchanged, metadata as the same headers); the others take minio-py's path, which carries any key
S3 accepts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import obstore
from obstore.store import S3Store

from paraflow_worker.contract import OutputObject

if TYPE_CHECKING:  # obstore's option and stream types are stubs only
    from obstore import BytesStream, GetOptions

MiB = 1024**2
WHOLE_MAX = 1 * MiB
PART = 5 * MiB
PARTS_IN_FLIGHT = 2
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]|//|^/|/$")
_HEADER = re.compile(r"[\x20-\x7e]*")
# Names minio-py sends as headers of their own, not as x-amz-meta-: left to minio-py's path.
_STANDARD = frozenset({"cache-control", "content-disposition", "content-encoding", "content-language", "expires"})


class Corrupted(ValueError):
    """The bytes read differ from the run's record of the output: nothing was written."""


def explain(error: obstore.exceptions.BaseError) -> str:
    """One line for a report: the S3 error code and HTTP status when the server sent them, and
    object_store's first sentence (its full text runs to a debug dump of the request)."""
    text = str(error)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    status = re.search(r"status code: (\d{3}[^:\n]*)", text)
    first = text.split("\n", 1)[0].split(": Error performing", 1)[0]
    label = code.group(1) if code else type(error).__name__
    return f"{label}{f' ({status.group(1).strip()})' if status else ''}: {first[:300]}"


def carries(source_key: str, key: str, metadata: dict[str, str]) -> bool:
    """True when object_store reads ``source_key`` and writes ``key`` unchanged, with ``metadata``
    as the same headers minio-py would send (plain printable ASCII names and values)."""
    if _UNSAFE.search(source_key) or _UNSAFE.search(key):
        return False
    return all(_HEADER.fullmatch(name) and _HEADER.fullmatch(value) for name, value in metadata.items()) and not any(
        name.lower().startswith("x-amz-") or name.lower() in _STANDARD for name in metadata
    )


def store(endpoint: str, bucket: str, access_key: str, *, secret_key: str, region: str | None) -> S3Store:
    url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    return S3Store(
        bucket,
        endpoint=f"{url.scheme}://{url.netloc}",
        access_key_id=access_key,
        secret_access_key=secret_key,
        region=region or "us-east-1",
        virtual_hosted_style_request=False,
        unsigned_payload=True,
        client_options={"allow_http": url.scheme == "http", "connect_timeout": dt.timedelta(seconds=10)},
        # Our caller retries each object with its own backoff and reports what still fails.
        retry_config={"max_retries": 2, "retry_timeout": dt.timedelta(seconds=60)},
    )


@dataclass(frozen=True)
class Put:
    """Where a copy goes in its target, and the headers and tags it carries."""

    key: str
    attributes: dict[str, str]
    tags: dict[str, str]


def copy(source: S3Store, target: S3Store, obj: OutputObject, *, put: Put) -> None:
    """Copies ``obj`` to ``put.key`` of ``target``, checked against its recorded size and sha256."""
    options: GetOptions = {"version": obj.version_id} if obj.version_id else {}
    if obj.size <= WHOLE_MAX:
        data = obstore.get(source, obj.key, options=options).bytes()
        _check(hashlib.sha256(data), len(data), obj)
        obstore.put(target, put.key, data, attributes=put.attributes, tags=put.tags or None, use_multipart=False)
        return
    # A stream read while it is uploaded must be driven from one event loop: obstore's blocking
    # calls cannot wait on each other inside its runtime.
    asyncio.run(_stream(source, target, obj, put=put, options=options))


async def _stream(source: S3Store, target: S3Store, obj: OutputObject, *, put: Put, options: GetOptions) -> None:
    response = await obstore.get_async(source, obj.key, options=options)
    await obstore.put_async(
        target,
        put.key,
        _checked(response.stream(min_chunk_size=PART), obj),
        attributes=put.attributes,
        tags=put.tags or None,
        use_multipart=True,
        chunk_size=PART,
        max_concurrency=PARTS_IN_FLIGHT,
    )


async def _checked(chunks: BytesStream, obj: OutputObject) -> AsyncIterator[bytes]:
    """Passes ``chunks`` on, hashing them; raises instead of ending when they differ from the
    record, so the upload they feed is aborted, not completed."""
    digest, size = hashlib.sha256(), 0
    async for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    _check(digest, size, obj)


def check(data: bytes, obj: OutputObject) -> None:
    """Raises :class:`Corrupted` unless ``data`` is what the run recorded for ``obj``."""
    _check(hashlib.sha256(data), len(data), obj)


def _check(digest: hashlib._Hash, size: int, obj: OutputObject) -> None:
    if size != obj.size or digest.hexdigest() != obj.sha256:
        raise Corrupted(
            f"the bytes read differ from the run's record (sha256 {digest.hexdigest()[:12]}… of {size} bytes, "
            f"recorded {obj.sha256[:12]}… of {obj.size}): the source changed or was corrupted in transit; "
            "nothing was written"
        )
