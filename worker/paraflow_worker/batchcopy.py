"""Small objects across servers, hundreds to a request: MinIO's auto-extracted TAR upload.

A small object's copy is two requests, and on a MinIO server the PUT costs more CPU than the
object's bytes do (about 0.8 ms against 0.35 ms for the GET, 4 KiB objects on this project's
bench). MinIO extracts a TAR uploaded with ``X-Amz-Meta-Snowball-Auto-Extract: true`` into one
object per entry, taking each entry's content type, user metadata and tags from its PAX records
(``minio.metadata.<header>``): one request writes a whole batch, and the target spends about a
third less CPU per object.

Only servers that do that get batches: :func:`extracts` asks the target once, with an empty TAR
that MinIO extracts into nothing (a server that stores it instead has it deleted at once). Every
object is read whole, checked against the run's sha256 before it goes into a batch, and hashed
with MD5 on the way; the caller then lists what landed and takes only replicas whose size, ETag
(MD5 of the stored bytes) and ``paraflow-sha256`` mark match. Whatever did not land that way
takes the per-object path, which overwrites it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import posixpath
import re
import tarfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import obstore
from obstore.store import S3Store

from paraflow_worker import fastcopy
from paraflow_worker.contract import OutputObject

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # obstore's option types are stubs only
    from obstore import GetOptions

KiB, MiB = 1024, 1024**2
# Above this the request's overhead is small against the bytes: such objects go one by one.
OBJECT_MAX = 128 * KiB
# A batch closes at whichever comes first; BATCHES_IN_FLIGHT of them are held at once (their
# objects, the TAR being written and its bytes: about 3 x 4 MiB each while it is built, then
# the TAR alone while it is sent).
BATCH_OBJECTS = 1000
BATCH_BYTES = 4 * MiB
BATCHES_IN_FLIGHT = 3
READS_PER_BATCH = 32
# Fewer than this many small objects for a target are not worth asking it whether it extracts.
MIN_OBJECTS = 32
EXTRACT = {"snowball-auto-extract": "true"}
# Entries are named by their whole key, with no MinIO prefix header: MinIO releases from 2021-04
# to 2022-10 extract but ignore that header, and would write a batch outside its prefix. So
# MinIO checks a batch's PutObject permission on the bucket, and credentials limited to a prefix
# get single copies.
KEY_MAX = 1024
# An HTTP header name; MinIO splits a PAX record at its first "=".
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What MinIO accepts as a PUT's user metadata (names and values), in bytes.
METADATA_MAX = 2 * KiB


@dataclass(frozen=True)
class Item:
    """One object to copy: the run's record of it, its key on the target, and the user metadata
    (names without ``x-amz-meta-``) and tags its replica carries."""

    obj: OutputObject
    key: str
    metadata: dict[str, str]
    tags: dict[str, str]


def batchable(item: Item) -> bool:
    """Small, and extracted under exactly ``item.key`` with exactly the metadata a PUT would give
    it. MinIO cleans each entry's name as a path (``a/./b`` would land as ``a/b``), refuses a
    ``.`` or ``..`` segment even around spaces or backslashes (and one refused entry ends the
    whole request), and checks no limit on an entry's metadata that it checks on a PUT's."""
    if item.obj.size > OBJECT_MAX or posixpath.normpath(item.key) != item.key or _bad_segment(item.key):
        return False
    try:
        # One key the server refuses would end the whole request.
        if len(item.key.encode()) > KEY_MAX:
            return False
    except UnicodeEncodeError:
        return False
    names = [name.lower() for name in item.metadata]
    if not all(_TOKEN.fullmatch(name) for name in names) or len(set(names)) < len(names):
        return False
    if sum(len(name) + len(value) for name, value in item.metadata.items()) > METADATA_MAX:
        return False
    return fastcopy.carries(item.obj.key, item.key, {"Content-Type": item.obj.content_type, **item.metadata})


def _bad_segment(key: str) -> bool:
    return any(segment.strip() in (".", "..") for segment in re.split(r"[/\\]", key))


def batches(items: Iterable[Item], most: int = BATCH_OBJECTS, most_bytes: int = BATCH_BYTES) -> list[list[Item]]:
    """``items`` in key order, cut every ``most`` objects or ``most_bytes`` bytes: each batch is
    then one contiguous range of keys, which one listing can check."""
    out: list[list[Item]] = []
    current: list[Item] = []
    size = 0
    for item in sorted(items, key=lambda i: i.key):
        if current and (len(current) == most or size + item.obj.size > most_bytes):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += item.obj.size
    if current:
        out.append(current)
    return out


def listing_range(batch: list[Item]) -> tuple[str, str, str]:
    """The listing that covers a batch (its keys in order): the prefix they share, a ``start-after``
    just before the first, and the last key, after which the listing can stop."""
    first, last = batch[0].key, batch[-1].key
    # Cut back to a "/": MinIO refuses a listing whose prefix or start-after ends in a "." segment
    # (as ``.crc`` files' keys would give).
    shared = os.path.commonprefix([first, last])  # noqa: RUF071 (characters, not paths)
    prefix = shared[: shared.rfind("/") + 1]
    start_after = first[:-1]
    if _bad_segment(start_after):
        start_after = prefix
    return prefix, start_after, last


def pax_records(item: Item) -> dict[str, str]:
    """The PAX records MinIO turns into the replica's headers, as a PUT of it would send them."""
    headers = {"Content-Type": item.obj.content_type}
    headers.update((f"X-Amz-Meta-{name}", value) for name, value in item.metadata.items())
    # A header's value reaches the server trimmed; a PAX record's would not be.
    records = {f"minio.metadata.{name}": value.strip(" ") for name, value in headers.items()}
    if item.tags:
        records["minio.metadata.X-Amz-Tagging"] = urlencode(item.tags, quote_via=quote)
    return records


def tar_of(entries: Iterable[tuple[Item, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item, data in entries:
            info = tarfile.TarInfo(item.key)
            info.size = len(data)
            # No modification time: the server stamps the replica as it would a PUT.
            info.mtime = 0
            info.pax_headers = pax_records(item)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def extracts(store: S3Store, prefix: str) -> bool:
    """Whether the server behind ``store`` extracts auto-extract TARs (MinIO does). Any doubt (a
    refused request, a probe that cannot be looked at) answers no: single copies always work."""
    probe = f"{prefix}.paraflow-extract-probe-{uuid.uuid4().hex}.tar"
    try:
        obstore.put(store, probe, tar_of([]), attributes=EXTRACT, use_multipart=False)
    except (obstore.exceptions.BaseError, OSError, ValueError):  # ValueError: a name it cannot send
        return False
    try:
        obstore.head(store, probe)
    except FileNotFoundError:
        return True
    except (obstore.exceptions.BaseError, OSError):
        pass
    discard(store, probe)
    return False


def discard(store: S3Store, key: str) -> None:
    """Deletes what a server that does not extract TARs would have stored under ``key``: it must
    not stay in the user's bucket; a refused delete is left to the log."""
    try:
        obstore.delete(store, key)
    except (obstore.exceptions.BaseError, OSError) as e:
        log.warning("could not delete %r (a TAR paraflow sent, if the server kept it): %s", key, e)


def batch_key(prefix: str) -> str:
    """The name a batch is sent under: only its permission is checked, nothing is stored there."""
    return f"{prefix}.paraflow-batch.tar"


@dataclass(frozen=True)
class Sent:
    """What one batch request sent: the MD5 of each object in its TAR, by key, and why the
    request failed, if it did (then some of those objects may have landed, or none)."""

    md5: dict[str, str]
    error: str = ""


def send(source: S3Store, target: S3Store, prefix: str, *, batch: list[Item]) -> Sent:
    """Writes ``batch`` under ``prefix`` of ``target`` in one request. An object that cannot be
    read, or whose bytes differ from the run's record, is left out (its one-by-one copy reports
    it)."""
    return asyncio.run(_send(source, target, prefix, batch=batch))


async def _send(source: S3Store, target: S3Store, prefix: str, *, batch: list[Item]) -> Sent:
    reads = asyncio.Semaphore(READS_PER_BATCH)

    async def read(item: Item) -> bytes | None:
        options: GetOptions = {"version": item.obj.version_id} if item.obj.version_id else {}
        try:
            async with reads:
                result = await obstore.get_async(source, item.obj.key, options=options)
                # A source that grew since the run is not read whole: it is no longer the output.
                if result.meta["size"] != item.obj.size:
                    return None
                data = bytes(await result.bytes_async())
            fastcopy.check(data, item.obj)
        except (obstore.exceptions.BaseError, OSError, ValueError):  # Corrupted is a ValueError
            return None
        return data

    read_all = await asyncio.gather(*(read(item) for item in batch))
    entries = [(item, data) for item, data in zip(batch, read_all, strict=True) if data is not None]
    md5 = {item.key: hashlib.md5(data, usedforsecurity=False).hexdigest() for item, data in entries}
    if not entries:
        return Sent(md5)
    body = tar_of(entries)
    # The TAR holds every byte now: let the objects go while it is sent.
    del read_all, entries
    try:
        await obstore.put_async(target, batch_key(prefix), body, attributes=EXTRACT, use_multipart=False)
    except (obstore.exceptions.BaseError, OSError, ValueError) as e:
        error = fastcopy.explain(e) if isinstance(e, obstore.exceptions.BaseError) else f"{type(e).__name__}: {e}"
        return Sent(md5, error)
    return Sent(md5)
