"""``paraflow-worker replicate``: copy a run's winning outputs to every replication target.

Driven by the result records (exact keys, sizes, sha256, content type, metadata, tags), never by
listing the source. For each target:

- first, the target must not be the run's own output under another endpoint name
  (:mod:`paraflow_worker.identity`): such a target is refused, nothing is copied or deleted;
- one listing of the target prefix *with user metadata* tells which replicas already match
  (same size and ``paraflow-sha256``): those are skipped, so a re-run copies nothing;
- replicas carry ASCII metadata only (sha256, workflow, run, destination), never the source
  key: a key may hold any character S3 accepts, a header value may not;
- same server and credentials: server-side copy (``CopyObject``; above 5 GiB a multipart
  part-copy whose part ranges :func:`copy_parts` computes), with content type, metadata and tags
  passed explicitly, since a part-copy would otherwise drop them;
- otherwise a streaming copy, hashed on the way through and checked against the recorded
  sha256, in parts of bounded size; small objects to a server that extracts uploaded TARs
  (MinIO) go hundreds to a request (:mod:`paraflow_worker.batchcopy`), each replica then checked
  by one listing of the batch's keys, and copied again one by one unless it landed exactly;
- each object is retried with backoff; what still fails is written to the report with its
  reason and makes the Job fail, so the operator retries or a redrive picks it up;
- ``verify``: ``checksum`` checks each copy as it happens (the streamed bytes' sha256 against
  the record; a server-side copy's ETag against the source's), ``size`` asks the target for
  each replica's size, ``fullRead`` reads every replica back and hashes it;
- ``deleteSync`` deletes only replicas marked as this workflow's for this destination whose
  output is no longer in the run: never an object paraflow did not write there, and every
  deletion is listed by key in the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

import obstore
import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, ComposeSource, CopySource, Tags
from minio.datatypes import parse_copy_object
from minio.error import MinioException, S3Error
from minio.helpers import genheaders
from obstore.store import S3Store

from paraflow_worker import batchcopy, contract, fastcopy, identity
from paraflow_worker.contract import (
    MAX_FAILURES_KEPT,
    Env,
    Failure,
    OutputObject,
    PartitionRef,
    ReduceResult,
    ReplicationReport,
    ReplicationTarget,
    ReplicationTask,
    ResultManifest,
    ShardResult,
    TargetReport,
)
from paraflow_worker.storage import HashingReader, client_from_env, get_json, make_client, object_tags, put_json

log = logging.getLogger(__name__)

GiB = 1024**3
MiB = 1024**2
MAX_COPY_PART = 5 * GiB
MIN_COPY_PART = 5 * MiB
MAX_PARTS = 10_000
STREAM_PART = 16 * MiB
TRIES = 4
# Streaming copies hold one part in memory each; at most this many run at once.
MAX_PARALLEL_STREAMS = 4
# Large objects copied on the fast path at once (each holds up to PARTS_IN_FLIGHT + 1 parts).
FAST_STREAMS = 4


def copy_parts(size: int, max_part: int = MAX_COPY_PART) -> list[tuple[int, int]]:
    """(offset, length) ranges for a multipart part-copy: as few parts as allowed, near-equal,
    each at most ``max_part``, all but the last at least 5 MiB, no more than 10,000."""
    if size <= 0:
        raise ValueError("a part-copy needs a non-empty source")
    count = -(-size // max_part)
    if count > MAX_PARTS:
        raise ValueError(f"{size} bytes need more than {MAX_PARTS} parts of {max_part} bytes")
    length = -(-size // count)
    parts = []
    offset = 0
    while offset < size:
        parts.append((offset, min(length, size - offset)))
        offset += length
    return parts


def shard_of(key: str, shards: int) -> int:
    return zlib.crc32(key.encode()) % shards


@dataclass
class Work:
    obj: OutputObject
    # Where its replica goes under the target prefix: p<partition>, or reduce.
    folder: str
    # The output's name within its attempt (its key less the attempt's output prefix).
    name: str


@dataclass(frozen=True)
class Replica:
    """What a listing of the target says of one object there."""

    size: int
    sha256: str = ""
    workflow: str = ""
    destination: str = ""
    etag: str = ""


class Counters:
    """A target's report, counted from many copy threads (and summed over forked processes).
    Its fields are the report's own (``TargetReport``, immutable once made): kept as a dict of
    them while counting."""

    def __init__(self, name: str) -> None:
        self._tally: dict[str, Any] = TargetReport(name=name).model_dump()
        self._lock = threading.Lock()

    def add(self, copied: int = 0, skipped: int = 0, size: int = 0) -> None:
        with self._lock:
            self._tally["copied"] += copied
            self._tally["skipped"] += skipped
            self._tally["bytes"] += size

    def deleted_one(self, key: str) -> None:
        with self._lock:
            self._tally["deleted"] += 1
            self._tally["deleted_keys"].append(key)

    def fail(self, key: str, reason: str) -> None:
        with self._lock:
            self._tally["failed"] += 1
            if len(self._tally["failures"]) < MAX_FAILURES_KEPT:
                self._tally["failures"].append(Failure(key=key, reason=reason[:1024]))

    @classmethod
    def combine(cls, name: str, parts: list[TargetReport]) -> Counters:
        total = cls(name)
        for part in parts:
            total.add(copied=part.copied, skipped=part.skipped, size=part.bytes)
            total._tally["failed"] += part.failed
            total._tally["failures"].extend(part.failures[: MAX_FAILURES_KEPT - len(total._tally["failures"])])
        return total

    def report(self) -> TargetReport:
        with self._lock:
            return TargetReport.model_validate(self._tally)


@dataclass(frozen=True)
class FastStores:
    """obstore stores for cross-server copies: the run bucket's, and each such target's by name."""

    source: S3Store
    targets: dict[str, S3Store]


def marked_alike(there: Replica | None, obj: OutputObject) -> bool:
    """A replica listed with this output's size and paraflow-sha256 mark."""
    return there is not None and (there.size, there.sha256) == (obj.size, obj.sha256)


def already_there(client: Minio, bucket: str, key: str, *, there: Replica | None, obj: OutputObject) -> bool:
    """The replica listed at ``key`` holds this output: same size and mark and, where both ETags
    are an MD5 of the bytes (one part, unencrypted: MinIO's, a copy's, a batch's), the same ETag,
    so bytes rewritten under a kept mark are found from the listing alone. Multipart ETags say
    nothing of the bytes (only verify: fullRead reads those), nor do an encrypting destination's
    (SSE-KMS, SSE-C): an ETag that differs is asked about once, and trusted to differ only where
    the replica is not encrypted."""
    if there is None or not marked_alike(there, obj):
        return False
    both_md5 = there.etag and obj.etag and "-" not in there.etag and "-" not in obj.etag
    if not both_md5 or there.etag == obj.etag:
        return True
    try:
        headers = client.stat_object(bucket, key).metadata or {}
    except S3Error:
        return False
    return any(name.lower().startswith("x-amz-server-side-encryption") for name in headers)


class Replicator:
    def __init__(
        self,
        source: Minio,
        bucket: str,
        run: str,
        *,
        task: ReplicationTask,
        target_clients: list[Minio],
        sleep: Callable[[float], None] = time.sleep,
        fast: FastStores | None = None,
    ) -> None:
        self.source = source
        self.bucket = bucket
        self.run_prefix = run
        self.task = task
        self.targets = list(zip(task.targets, target_clients, strict=True))
        self.sleep = sleep
        self.fast = fast
        self.streams = threading.Semaphore(MAX_PARALLEL_STREAMS)
        # Large objects on the fast path: each holds up to PARTS_IN_FLIGHT + 1 parts in memory.
        self.fast_streams = threading.Semaphore(FAST_STREAMS)
        # Above this a server-side copy becomes a multipart part-copy (S3's CopyObject limit).
        self.max_copy_part = MAX_COPY_PART
        # Fewer small objects than this for a target are copied one by one, never batched.
        self.batch_min = batchcopy.MIN_OBJECTS

    def work(self) -> list[Work]:
        """Every selected output of the task's partitions (all shards' share), and of its reduce step."""
        run = self.run_prefix
        refs = self.task.partitions
        if refs is None:
            manifest = get_json(self.source, self.bucket, contract.manifest_key(run), model=ResultManifest)
            refs = [PartitionRef(index=p.index, attempt=p.attempt) for p in manifest.succeeded]
        out = []
        for ref in refs:
            prefix = contract.results_prefix(run, ref.index, ref.attempt)
            for listed in self.source.list_objects(self.bucket, prefix=prefix, recursive=True):
                record = listed.object_name or ""
                result = get_json(self.source, self.bucket, record, model=ShardResult)
                written_under = result.prefix(self.task.output_prefix, self.task.run_uid)
                out += self._outputs(record, result.outputs, written_under, folder=contract.partition_folder(ref.index))
        if self.task.reduce_attempt is not None:
            record = contract.reduce_result_key(run, self.task.reduce_attempt)
            reduced = get_json(self.source, self.bucket, record, model=ReduceResult)
            # Where the step was told to write, not where its record says it did.
            expected = contract.reduce_output_prefix(
                self.task.output_prefix, self.task.run_uid, self.task.reduce_attempt
            )
            if (reduced.attempt, reduced.output_prefix) != (self.task.reduce_attempt, expected):
                raise ValueError(
                    f"record {record} is not the reduce attempt {self.task.reduce_attempt}'s under {expected!r}"
                )
            out += self._outputs(record, reduced.outputs, expected, folder=contract.REDUCE_FOLDER)
        return out

    def _outputs(self, record: str, outputs: list[OutputObject], written_under: str, *, folder: str) -> list[Work]:
        selected = []
        for obj in outputs:
            if not obj.key.startswith(written_under):
                raise ValueError(f"record {record} names {obj.key!r} outside {written_under!r}")
            w = Work(obj, folder, obj.key[len(written_under) :])
            if self._selected(w):
                selected.append(w)
        return selected

    def _selected(self, w: Work) -> bool:
        if not w.name.startswith(self.task.filter_prefix):
            return False
        return all(w.obj.tags.get(k) == v for k, v in self.task.filter_tags.items())

    def refusal(self, client: Minio, target: ReplicationTarget, token: str) -> str | None:
        """Why ``target`` must not be written at all, or None."""
        storage = identity.compare(client, self.bucket, self.run_prefix, token=token)
        return identity.overlap_error(target, self.bucket, self.task.output_prefix, storage=storage)

    def run(self, work: list[Work], shard: int = 0, shards: int = 1, *, processes: int = 1) -> ReplicationReport:
        """Copies this shard's share (by hash of the source key); deletes, with deleteSync, the
        extraneous replicas this shard owns (by hash of the replica key), knowing all shards' work.

        With ``processes`` > 1 the copies are split over that many forked processes (each with
        its own clients, from the env): one Python process cannot use more than one core."""
        mine = [w for w in work if shard_of(w.obj.key, shards) == shard]
        reports = []
        token = identity.ensure_token(self.source, self.bucket, self.run_prefix)
        for index, (target, client) in enumerate(self.targets):
            refused = self.refusal(client, target, token)
            if refused is not None:
                counters = Counters(target.name)
                counters.fail(target.prefix or "/", refused)
                reports.append(counters.report())
                continue
            try:
                existing = self._existing(client, target)
                listing_error = ""
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as e:
                # A write-only destination may refuse listings: copy everything (nothing can be
                # skipped), and let each copy succeed or fail on its own.
                existing, listing_error = {}, f"cannot list the destination: {getattr(e, 'code', '') or e}"
            # Forked processes help minio-py, whose requests hold the GIL; the fast path makes its
            # requests off the GIL, and its runtime must not be forked once started.
            if processes > 1 and len(mine) >= 4 * processes and self._fast_store(target) is None:
                chunks = [mine[i::processes] for i in range(processes)]
                with multiprocessing.get_context("fork").Pool(processes) as pool:
                    parts = pool.map(
                        _copy_in_child,
                        [_Chunk(self.task, self.bucket, self.run_prefix, index, c, existing) for c in chunks],
                    )
                counters = Counters.combine(target.name, parts)
            else:
                counters = Counters(target.name)
                self._copy_all(client, target, mine, existing=existing, counters=counters)
            if self.task.delete_sync and listing_error:
                counters.fail(target.prefix or "/", f"deleteSync skipped: {listing_error}")
            elif self.task.delete_sync:
                wanted = {self._dest_key(target, w) for w in work}
                extraneous = [
                    k
                    for k, replica in existing.items()
                    if k not in wanted and self._ours(target, replica) and shard_of(k, shards) == shard
                ]
                self._delete(client, target, extraneous, counters=counters)
            reports.append(counters.report())
        return ReplicationReport(label=self.task.label, shard=shard, targets=reports)

    def _copy_all(
        self,
        client: Minio,
        target: ReplicationTarget,
        work: list[Work],
        *,
        existing: dict[str, Replica],
        counters: Counters,
    ) -> None:
        store = self._fast_store(target)
        # fullRead reads every replica back one by one anyway.
        if store is not None and self.task.verify != "fullRead":
            work = self._copy_batched(client, target, store, work=work, existing=existing, counters=counters)
        with ThreadPoolExecutor(self.task.concurrency) as pool:
            list(pool.map(lambda w: self._one(client, target, w, existing=existing, counters=counters), work))

    def _copy_batched(
        self,
        client: Minio,
        target: ReplicationTarget,
        store: S3Store,
        *,
        work: list[Work],
        existing: dict[str, Replica],
        counters: Counters,
    ) -> list[Work]:
        """Copies the small objects of ``work`` in batches where the target extracts them
        (:mod:`paraflow_worker.batchcopy`); returns the work left for one-by-one copies: the rest,
        and whatever did not land in a batch exactly as it must."""
        small: dict[str, tuple[batchcopy.Item, Work]] = {}
        rest = []
        for w in work:
            key = self._dest_key(target, w)
            item = batchcopy.Item(w.obj, key, self._metadata(w.obj, target), w.obj.tags)
            # A replica marked alike goes one by one, where its ETag is weighed (and skipped if right).
            if key not in small and not marked_alike(existing.get(key), w.obj) and batchcopy.batchable(item):
                small[key] = (item, w)
            else:
                rest.append(w)
        if len(small) < self.batch_min or not batchcopy.extracts(store, target.prefix):
            return work

        def copy_batch(batch: list[batchcopy.Item]) -> list[Work]:
            assert self.fast is not None
            sent = batchcopy.send(self.fast.source, store, target.prefix, batch=batch)
            removed: list[str] = []
            try:
                landed = self._landed(client, target, batch, sent=sent.md5, removed=removed)
                why = (
                    sent.error
                    or "the others were not read as recorded, or did not land with their size, ETag and marks"
                )
            except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                landed, why = set(), f"cannot list them: {type(e).__name__}: {getattr(e, 'code', '') or e}"
            for item in batch:
                if item.key in landed:
                    counters.add(copied=1, size=item.obj.size)
            if len(landed) < len(batch):
                log.warning(
                    "%s: a batch from %r wrote %d of %d replicas (%s); the others are copied one by one%s",
                    target.name,
                    batch[0].key,
                    len(landed),
                    len(batch),
                    why,
                    f"; removed first, as their bytes differ from their mark: {removed!r}" if removed else "",
                )
            return [small[item.key][1] for item in batch if item.key not in landed]

        first, *others = batchcopy.batches(item for item, _ in small.values())
        left = copy_batch(first)
        rest += left
        if len(left) == len(first):
            # Nothing of the first batch landed as it must (a server that drops PAX metadata or
            # encrypts so that an ETag is no MD5, or one that stored the TAR as it came): the
            # others would not either.
            batchcopy.discard(store, batchcopy.batch_key(target.prefix))
            return rest + [small[item.key][1] for batch in others for item in batch]
        with ThreadPoolExecutor(batchcopy.BATCHES_IN_FLIGHT) as pool:
            for left in pool.map(copy_batch, others):
                rest += left
        return rest

    def _landed(
        self,
        client: Minio,
        target: ReplicationTarget,
        batch: list[batchcopy.Item],
        *,
        sent: dict[str, str],
        removed: list[str],
    ) -> set[str]:
        """The keys of ``batch`` whose replica is there with the size, ETag (the MD5 of the bytes
        sent) and sha256 mark it must have: one listing of the batch's range of keys. A replica of
        one sent with the mark but other bytes is removed (into ``removed``): every later run would
        skip it as a match. One not sent is never touched: it may be the only good copy."""
        expected = {item.key: (item.obj.size, sent[item.key], item.obj.sha256) for item in batch if item.key in sent}
        prefix, start_after, last = batchcopy.listing_range(batch)
        landed = set()
        for key, replica in self._listed(client, target.bucket, prefix, start_after=start_after):
            if key > last:
                break
            if expected.get(key) == (replica.size, replica.etag, replica.sha256):
                landed.add(key)
            elif key in expected and replica.sha256 == expected[key][2]:
                client.remove_object(target.bucket, key)
                removed.append(key)
        return landed

    def _existing(self, client: Minio, target: ReplicationTarget) -> dict[str, Replica]:
        """What the target already holds under its prefix, with paraflow's marks, in one listing."""
        return dict(self._listed(client, target.bucket, target.prefix))

    @staticmethod
    def _listed(client: Minio, bucket: str, prefix: str, *, start_after: str = "") -> Iterator[tuple[str, Replica]]:
        for obj in client.list_objects(
            bucket, prefix=prefix, recursive=True, start_after=start_after or None, include_user_meta=True
        ):
            meta = {k.lower(): v for k, v in (obj.metadata or {}).items()}

            def mark(name: str, meta: dict[str, str] = meta) -> str:
                return meta.get(f"x-amz-meta-{name}", "")

            yield (
                obj.object_name or "",
                Replica(
                    obj.size or 0,
                    mark(contract.REPLICA_SHA256),
                    mark(contract.REPLICA_WORKFLOW),
                    mark(contract.REPLICA_DESTINATION),
                    (obj.etag or "").strip('"'),
                ),
            )

    def _ours(self, target: ReplicationTarget, replica: Replica) -> bool:
        """A replica this workflow made for this destination (any run of it): deleteSync may
        remove it. Anything else under the prefix was put there by someone else, and stays."""
        return bool(self.task.workflow) and (replica.workflow, replica.destination) == (self.task.workflow, target.name)

    def _dest_key(self, target: ReplicationTarget, w: Work) -> str:
        return contract.replica_key(target.prefix, w.folder, w.name)

    def _one(
        self,
        client: Minio,
        target: ReplicationTarget,
        w: Work,
        *,
        existing: dict[str, Replica],
        counters: Counters,
    ) -> None:
        key = self._dest_key(target, w)
        if already_there(client, target.bucket, key, there=existing.get(key), obj=w.obj) and (
            self.task.verify != "fullRead" or self._read_matches(client, target, key, obj=w.obj)
        ):
            counters.add(skipped=1)
            return
        last = ""
        for attempt in range(TRIES):
            if attempt:
                self.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
            try:
                self._copy(client, target, key, obj=w.obj)
                self._verify(client, target, key, obj=w.obj)
                counters.add(copied=1, size=w.obj.size)
                return
            except obstore.exceptions.BaseError as e:
                last = fastcopy.explain(e)
            except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'code', '') or e}"
        counters.fail(key, f"after {TRIES} tries: {last}")

    def _metadata(self, obj: OutputObject, target: ReplicationTarget) -> dict[str, str]:
        return {
            **obj.metadata,
            contract.REPLICA_SHA256: obj.sha256,
            contract.REPLICA_WORKFLOW: self.task.workflow,
            contract.REPLICA_RUN: self.task.run_uid,
            contract.REPLICA_DESTINATION: target.name,
        }

    def _copy(self, client: Minio, target: ReplicationTarget, key: str, *, obj: OutputObject) -> None:
        meta = self._metadata(obj, target)
        tags = object_tags(obj.tags)
        if target.server_side and obj.size > self.max_copy_part:
            sources = [
                ComposeSource(self.bucket, obj.key, offset=o, length=n, version_id=obj.version_id)
                for o, n in copy_parts(obj.size, self.max_copy_part)
            ]
            headers = {"Content-Type": obj.content_type, **meta}
            client.compose_object(target.bucket, key, sources, metadata=cast(Any, headers), tags=tags)
        elif target.server_side:
            etag = _copy_object(
                client,
                target.bucket,
                key,
                source_bucket=self.bucket,
                obj=obj,
                metadata={"Content-Type": obj.content_type, **meta},
                tags=tags,
            )
            if self.task.verify == "checksum" and obj.etag and "-" not in obj.etag and etag != obj.etag:
                raise ValueError(f"server-side copy returned ETag {etag}, the source had {obj.etag}")
        elif (store := self._fast_store(target)) is not None and fastcopy.carries(obj.key, key, meta):
            assert self.fast is not None
            # Only a streamed object holds parts in memory: only those take a slot.
            with self.fast_streams if obj.size > fastcopy.WHOLE_MAX else contextlib.nullcontext():
                put = fastcopy.Put(key, {"Content-Type": obj.content_type, **meta}, obj.tags)
                fastcopy.copy(self.fast.source, store, obj, put=put)
        else:
            with self.streams:
                response = self.source.get_object(self.bucket, obj.key, version_id=obj.version_id)
                try:
                    reader = HashingReader(cast(IO[bytes], response))
                    client.put_object(
                        target.bucket,
                        key,
                        cast(BinaryIO, reader),
                        length=obj.size,
                        part_size=STREAM_PART,
                        num_parallel_uploads=1,
                        content_type=obj.content_type,
                        metadata=cast(Any, meta),
                        tags=tags,
                    )
                finally:
                    response.close()
                    response.release_conn()
                if reader.sha256.hexdigest() != obj.sha256:
                    # minio-py has written it by now: a replica with other bytes than its
                    # paraflow-sha256 says would be skipped as a match by every later run.
                    client.remove_object(target.bucket, key)
                    raise fastcopy.Corrupted(
                        "the bytes read differ from the run's record (sha256): the source changed or was "
                        "corrupted in transit; the replica was removed"
                    )

    def _fast_store(self, target: ReplicationTarget) -> S3Store | None:
        return None if self.fast is None else self.fast.targets.get(target.name)

    def _verify(self, client: Minio, target: ReplicationTarget, key: str, *, obj: OutputObject) -> None:
        """``checksum`` is checked during the copy itself (the streamed bytes' sha256, or the
        server-side copy's ETag); ``size`` asks the target; ``fullRead`` reads the replica back."""
        if self.task.verify == "size":
            stat = client.stat_object(target.bucket, key)
            if stat.size != obj.size:
                raise ValueError(f"replica has {stat.size} bytes, expected {obj.size}")
        elif self.task.verify == "fullRead" and not self._read_matches(client, target, key, obj=obj):
            raise ValueError("replica content differs from the source (fullRead)")

    def _read_matches(self, client: Minio, target: ReplicationTarget, key: str, *, obj: OutputObject) -> bool:
        try:
            response = client.get_object(target.bucket, key)
        except S3Error:
            return False
        try:
            digest = hashlib.sha256()
            for chunk in response.stream(MiB):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest() == obj.sha256

    def _delete(self, client: Minio, target: ReplicationTarget, keys: list[str], *, counters: Counters) -> None:
        """Only with deleteSync: this workflow's replicas whose output the run no longer has.
        One DELETE per key: a multi-object delete is an XML body, where a key holding ``\r``
        would be read back as another key."""
        for key in sorted(keys):
            client.remove_object(target.bucket, key)
            counters.deleted_one(key)


def _copy_object(
    client: Minio,
    bucket: str,
    key: str,
    *,
    source_bucket: str,
    obj: OutputObject,
    metadata: dict[str, str],
    tags: Tags | None,
) -> str:
    """One ``CopyObject`` request. minio-py's ``copy_object`` first HEADs the source for its
    size, which the run's records already hold: for many small objects that doubles the requests.
    Uses minio-py 7.2's request helpers (the dependency is pinned below 8)."""
    headers = genheaders(cast(Any, metadata), None, tags, None, False)
    headers["x-amz-metadata-directive"] = REPLACE
    headers["x-amz-tagging-directive"] = REPLACE
    headers.update(CopySource(source_bucket, obj.key, version_id=obj.version_id).gen_copy_headers())
    response = client._execute("PUT", bucket, object_name=key, headers=headers)
    etag, _ = parse_copy_object(response)
    return etag.strip('"')


@dataclass(frozen=True)
class _Chunk:
    """One forked process's share of a target's copies."""

    task: ReplicationTask
    bucket: str
    run: str
    index: int  # of the target
    work: list[Work]
    existing: dict[str, Replica]


def _copy_in_child(chunk: _Chunk) -> TargetReport:
    """Runs in a forked process: fresh clients (never the parent's sockets), one target."""
    clients = target_clients(chunk.task)
    replicator = Replicator(client_from_env(), chunk.bucket, chunk.run, task=chunk.task, target_clients=clients)
    target, client = replicator.targets[chunk.index]
    counters = Counters(target.name)
    replicator._copy_all(client, target, chunk.work, existing=chunk.existing, counters=counters)
    return counters.report()


def target_clients(task: ReplicationTask) -> list[Minio]:
    clients = []
    for i, target in enumerate(task.targets):
        access, secret = contract.destination_credential_env(i)
        http = urllib3.PoolManager(
            maxsize=task.concurrency,
            timeout=urllib3.Timeout(connect=10, read=300),
            retries=urllib3.Retry(total=2, backoff_factor=0.2),
        )
        clients.append(
            make_client(target.endpoint, os.environ[access], os.environ[secret], region=target.region, http_client=http)
        )
    return clients


def fast_stores(task: ReplicationTask, bucket: str) -> FastStores:
    """obstore stores from the contract's env, for every target that is not copied server-side."""
    env = os.environ
    source = fastcopy.store(
        env[Env.S3_ENDPOINT],
        bucket,
        env[Env.S3_ACCESS_KEY],
        secret_key=env[Env.S3_SECRET_KEY],
        region=env.get(Env.S3_REGION),
    )
    targets = {}
    for i, target in enumerate(task.targets):
        if not target.server_side:
            access, secret = contract.destination_credential_env(i)
            targets[target.name] = fastcopy.store(
                target.endpoint, target.bucket, env[access], secret_key=env[secret], region=target.region
            )
    return FastStores(source, targets)


def iter_failures(report: ReplicationReport) -> Iterator[str]:
    for target in report.targets:
        for failure in target.failures:
            yield f"{target.name}: {failure.key}: {failure.reason}"


def main() -> None:
    env = os.environ
    task = ReplicationTask.model_validate_json(env[Env.REPLICATION])
    shard, shards = int(env.get(Env.SHARD, "0")), int(env.get(Env.SHARD_COUNT, "1"))
    source = client_from_env()
    bucket, run = env[Env.RUN_BUCKET], env[Env.RUN_PREFIX]
    replicator = Replicator(
        source, bucket, run, task=task, target_clients=target_clients(task), fast=fast_stores(task, bucket)
    )
    processes = int(env.get(contract.Env.REPLICATION_PROCESSES, "0") or 0) or min(4, os.cpu_count() or 1)
    report = replicator.run(replicator.work(), shard, shards, processes=processes)
    put_json(source, bucket, contract.replication_report_key(run, task.label, shard), doc=report)
    for t in report.targets:
        log.info(
            "%s: copied %d (%d bytes), skipped %d, failed %d, deleted %d",
            t.name,
            t.copied,
            t.bytes,
            t.skipped,
            t.failed,
            t.deleted,
        )
    for t in report.targets:
        for key in t.deleted_keys:
            log.info("DELETED %s: %r", t.name, key)
    for line in iter_failures(report):
        log.error("FAILED %s", line)
    if any(t.failed for t in report.targets):
        raise SystemExit(3)
