"""Helpers for user processors running in a partition pod.

    from paraflow_worker import sdk

    with sdk.shard() as shard:                 # reads the env the operator set
        for item in shard.objects():           # this shard's slice of the partition's objects
            with shard.open(item) as stream:   # streamed, never read whole
                ...
        shard.write("summary.json", data)      # under this attempt's own output prefix

    with sdk.shard() as shard:                 # a record input (input.reader jsonl/json/csv, items)
        for record in shard.records():         # record.index, record.value (parsed JSON)
            shard.emit({"total": record.value["qty"] * 2}, record)   # one small JSON result

``shard.kind`` says which the workflow maps over; ``shard.items()`` returns either.

    with sdk.reduce() as run:                  # the reduce step, once the map is done
        for out in run.map_outputs():          # every winning attempt's outputs (out.partition, out.name)
            with run.open(out) as stream: ...
        for emitted in run.map_results():      # every emitted result (partition, index, result)
            ...
        run.write("summary.json", data)        # under the reduce attempt's own prefix

Reads and writes overlap their round trips (paraflow_worker.transfer): opened in the order of
``objects()``, items are fetched several at a time ahead of the loop, and ``write`` of bytes
uploads in the background, both within one byte budget; leaving the block waits for the uploads.
The reduce step reads ``map_outputs()`` and ``map_results()`` the same way.

Records know their position in the whole input (``record.index``, Step Functions' $$.Map.Item.Index);
``shard.batch_input`` is the partitioner's batchInput. Leaving the ``with`` block normally
records the shard's result (keys, sizes, sha256, and the emitted results as
``results-s<shard>.jsonl``) for the manifest; an exception records nothing, so the attempt counts
as failed and is retried.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Literal, TypeVar, cast

from minio import Minio
from minio.helpers import ObjectWriteResult
from urllib3 import BaseHTTPResponse

from paraflow_worker import contract
from paraflow_worker.contract import (
    Env,
    Item,
    ManifestPartition,
    OutputObject,
    PartitionItems,
    Record,
    ReduceResult,
    ResultManifest,
    ShardResult,
)
from paraflow_worker.storage import HashingReader, client_from_env, get_json, object_tags, put_json
from paraflow_worker.transfer import Body, Prefetcher, TransferSettings, Uploader, ordered_map

_Built = TypeVar("_Built")

PART_SIZE = 16 * 1024 * 1024
RESULTS_IN_MEMORY = 8 * 1024 * 1024


class _Outputs:
    """Writes outputs under one attempt's own prefix and records what it wrote (a mixin: the
    dataclasses using it keep their own field order)."""

    client: Minio
    output_bucket: str
    output_prefix: str
    outputs: list[OutputObject]
    _io: _Concurrent

    def _reserved(self, name: str) -> str | None:
        """Why ``name`` is not the user's to write, or None."""
        return None

    def write(
        self,
        name: str,
        data: bytes | IO[bytes],
        content_type: str = "application/octet-stream",
        *,
        metadata: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> OutputObject:
        """Uploads ``name`` under this attempt's prefix; a stream is uploaded in parts.
        Any name S3 accepts will do; one that cannot be stored is refused before any upload.

        Bytes are uploaded in the background (PARAFLOW_SDK_CONCURRENCY at once, within the byte
        budget): the returned record gets its etag when the shard commits, which waits for every
        upload; a failed one fails the shard, so nothing is recorded."""
        reserved = self._reserved(name)
        if reserved is not None:
            raise ValueError(f"output {name!r} {reserved}: choose another name")
        key = f"{self.output_prefix}{name}"
        problem = contract.key_problem(key)
        if problem is not None:
            raise ValueError(f"output {name!r} cannot be stored as {key!r}: {problem}")
        if isinstance(data, bytes) and self._io.settings.concurrent:
            pending = OutputObject(
                key=key,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                content_type=content_type,
                metadata=dict(metadata or {}),
                tags=dict(tags or {}),
            )
            self.outputs.append(pending)
            put = functools.partial(
                self._put,
                key,
                HashingReader(io.BytesIO(data)),
                content_type=content_type,
                metadata=metadata,
                tags=tags,
            )
            self._io.uploaded(len(self.outputs) - 1, self._io.uploads().submit(put, len(data)))
            return pending
        reader = HashingReader(io.BytesIO(data) if isinstance(data, bytes) else data)
        result = self._put(key, reader, content_type=content_type, metadata=metadata, tags=tags)
        out = OutputObject(
            key=key,
            size=reader.size,
            sha256=reader.sha256.hexdigest(),
            etag=(result.etag or "").strip('"'),
            version_id=result.version_id,
            content_type=content_type,
            metadata=dict(metadata or {}),
            tags=dict(tags or {}),
        )
        self.outputs.append(out)
        return out

    def _put(
        self,
        key: str,
        reader: HashingReader,
        *,
        content_type: str,
        metadata: dict[str, str] | None,
        tags: dict[str, str] | None,
    ) -> ObjectWriteResult:
        return self.client.put_object(
            self.output_bucket,
            key,
            cast(BinaryIO, reader),
            length=-1,
            part_size=PART_SIZE,
            content_type=content_type,
            metadata=cast(Any, metadata),
            tags=object_tags(tags),
        )

    def _settle_uploads(self) -> None:
        """Waits for every background upload (raising the first failure) and gives each output
        record the etag and version its upload got."""
        for index, result in self._io.settle():
            self.outputs[index] = self.outputs[index].model_copy(
                update={"etag": (result.etag or "").strip('"'), "version_id": result.version_id}
            )


def _from_env(build: Callable[[Mapping[str, str], Minio], _Built], client: Minio | None, *, pod: str) -> _Built:
    """An SDK object made from its pod's environment, with the given client or one with a
    connection for each transfer it may run at once, and as many spare; a variable missing
    means this is not a paraflow pod."""
    try:
        return build(os.environ, client or client_from_env(2 * TransferSettings.from_env().concurrency))
    except KeyError as err:
        raise SystemExit(f"paraflow sdk: missing env var {err.args[0]}: not in a paraflow {pod}?") from err


@dataclass
class Shard(_Outputs):
    client: Minio
    workflow: str
    partition: int
    attempt: int
    shard: int
    shard_count: int
    input_bucket: str
    run_bucket: str
    run_prefix: str
    output_bucket: str
    output_prefix: str
    input_prefix: str = ""
    outputs: list[OutputObject] = field(default_factory=list)
    _partition: PartitionItems | None = None
    # Emitted results, spooled to disk beyond a few MiB: a shard may emit one per record.
    _results: tempfile.SpooledTemporaryFile[bytes] | None = None
    _committed: bool = False
    _order: list[tuple[str, int]] | None = None  # objects() as (key, size), in the order read ahead
    _io: _Concurrent = field(default_factory=lambda: _Concurrent(TransferSettings.from_env()))

    @classmethod
    def from_env(cls, client: Minio | None = None) -> Shard:
        def build(e: Mapping[str, str], ready: Minio) -> Shard:
            return cls(
                client=ready,
                workflow=e[Env.WORKFLOW],
                partition=int(e[Env.PARTITION]),
                attempt=int(e[Env.ATTEMPT]),
                shard=int(e.get(Env.SHARD, "0")),
                shard_count=int(e.get(Env.SHARD_COUNT, "1")),
                input_bucket=e[Env.INPUT_BUCKET],
                run_bucket=e[Env.RUN_BUCKET],
                run_prefix=e[Env.RUN_PREFIX],
                output_bucket=e[Env.OUTPUT_BUCKET],
                output_prefix=e[Env.OUTPUT_PREFIX],
                input_prefix=e.get(Env.INPUT_PREFIX, ""),
            )

        return _from_env(build, client, pod="pod")

    def _doc(self) -> PartitionItems:
        if self._partition is None:
            key = contract.partition_key(self.run_prefix, self.partition)
            self._partition = get_json(self.client, self.run_bucket, key, model=PartitionItems)
        return self._partition

    @property
    def kind(self) -> Literal["objects", "records"]:
        """objects: ``items()`` are Items to ``open``; records: Records with a parsed ``value``."""
        return self._doc().kind

    @property
    def batch_input(self) -> dict[str, Any] | None:
        return self._doc().batch_input

    def items(self) -> list[Item] | list[Record]:
        """This shard's slice of the partition: Items of an object input, Records of a record input."""
        return self.records() if self.kind == "records" else self.objects()

    def objects(self) -> list[Item]:
        """``items()`` of an object input, typed; a record input raises (``kind`` tells which)."""
        if self.kind != "objects":
            raise TypeError("this workflow maps over records: use shard.records() or shard.items()")
        return contract.shard_slice(self._doc().items, self.shard, self.shard_count)

    def records(self) -> list[Record]:
        """``items()`` of a record input, typed; an object input raises (``kind`` tells which)."""
        if self.kind != "records":
            raise TypeError("this workflow maps over objects: use shard.objects() or shard.items()")
        return contract.shard_slice(self._doc().records, self.shard, self.shard_count)

    def emit(self, result: Any, item: Item | Record | None = None) -> None:
        """Record one small JSON result, for an item (its index is kept with it) or the batch."""
        if self._committed:
            raise RuntimeError("emit() after the shard was committed: emit inside the `with sdk.shard()` block")
        if self._results is None:
            self._results = tempfile.SpooledTemporaryFile(max_size=RESULTS_IN_MEMORY)  # noqa: SIM115 (closed by commit)
        line = {"index": item.index if isinstance(item, Record) else None, "result": result}
        # allow_nan=False: NaN and Infinity are not JSON, and strict readers of the results refuse them.
        self._results.write(json.dumps(line, ensure_ascii=False, allow_nan=False).encode() + b"\n")

    def open(self, item: Item) -> AbstractContextManager[BaseHTTPResponse | Body]:
        """The item's bytes as a stream. Read in the order of ``objects()``, the items are fetched
        ahead, several at once, within PARAFLOW_SDK_BUDGET_BYTES; a large item streams."""
        if self._io.settings.concurrent and item.size <= self._io.settings.stream_above:
            if self._order is None:  # once: an open per item must not walk the whole partition
                self._order = [(i.key, i.size) for i in self.objects()]
            data = self._io.read_ahead(self.client, self.input_bucket, self._order).take(item.key)
            if data is not None:
                return nullcontext(Body(data))
        return _stream(self.client, self.input_bucket, item.key)

    def relative_name(self, item: Item) -> str:
        """The item's key within the input prefix: a natural name for the output made from it."""
        return item.key[len(self.input_prefix) :] if item.key.startswith(self.input_prefix) else item.key

    def _reserved(self, name: str) -> str | None:
        if name == contract.results_name(self.shard) and not self._committed:
            return "is where this shard's emitted results go"
        return None

    def commit(self) -> None:
        self._settle_uploads()
        self._committed = True
        results = None
        if self._results is not None:
            self._results.seek(0)
            results = self.write(contract.results_name(self.shard), self._results, "application/x-ndjson").key
            self._results.close()
        result = ShardResult(
            partition=self.partition,
            attempt=self.attempt,
            shard=self.shard,
            outputs=self.outputs,
            output_prefix=self.output_prefix,
            results=results,
        )
        key = contract.shard_result_key(self.run_prefix, self.partition, self.attempt, shard=self.shard)
        put_json(self.client, self.run_bucket, key, doc=result)


@contextmanager
def shard(client: Minio | None = None) -> Iterator[Shard]:
    current = Shard.from_env(client)
    try:
        yield current
        current.commit()
    finally:
        current._io.close()


@dataclass(frozen=True)
class Emitted:
    """One result a map shard emitted: its partition, its record's index (None: per batch), the value."""

    partition: int
    index: int | None
    result: Any


@dataclass(frozen=True)
class MapOutput:
    """One output of a winning attempt: its partition, its name within the attempt, its record."""

    partition: int
    name: str
    obj: OutputObject


@dataclass
class Reducer(_Outputs):
    """The reduce step: reads what the map's winning attempts wrote and emitted, writes its own outputs."""

    client: Minio
    workflow: str
    attempt: int
    run_bucket: str
    run_prefix: str
    manifest_key: str
    output_bucket: str
    output_prefix: str
    outputs: list[OutputObject] = field(default_factory=list)
    _manifest: ResultManifest | None = None
    _order: list[tuple[str, int]] = field(default_factory=list)  # map_outputs(), as listed last
    _io: _Concurrent = field(default_factory=lambda: _Concurrent(TransferSettings.from_env()))

    @classmethod
    def from_env(cls, client: Minio | None = None) -> Reducer:
        def build(e: Mapping[str, str], ready: Minio) -> Reducer:
            return cls(
                client=ready,
                workflow=e[Env.WORKFLOW],
                attempt=int(e[Env.ATTEMPT]),
                run_bucket=e[Env.RUN_BUCKET],
                run_prefix=e[Env.RUN_PREFIX],
                manifest_key=e[Env.MANIFEST],
                output_bucket=e[Env.OUTPUT_BUCKET],
                output_prefix=e[Env.OUTPUT_PREFIX],
            )

        return _from_env(build, client, pod="reduce pod")

    @property
    def manifest(self) -> ResultManifest:
        """Which attempt won each partition, and which partitions failed (within tolerance)."""
        if self._manifest is None:
            self._manifest = get_json(self.client, self.run_bucket, self.manifest_key, model=ResultManifest)
        return self._manifest

    def _records_of(self, part: ManifestPartition) -> list[ShardResult]:
        listed = self.client.list_objects(self.run_bucket, prefix=part.results_prefix, recursive=True)
        records = [get_json(self.client, self.run_bucket, o.object_name or "", model=ShardResult) for o in listed]
        return sorted(records, key=lambda r: r.shard)

    def _shard_records(self) -> Iterator[tuple[int, ShardResult]]:
        """Each winning attempt's shard records, in partition order, read several partitions ahead."""
        parts = sorted(self.manifest.succeeded, key=lambda p: p.index)
        if self._io.settings.concurrent:
            read = ordered_map(self._records_of, parts, pool=self._io.pool(), window=self._io.settings.concurrency)
        else:
            read = map(self._records_of, parts)
        for part, records in zip(parts, read, strict=True):
            for record in records:
                yield part.index, record

    def map_outputs(self) -> Iterator[MapOutput]:
        """Every output of the winning attempts (emitted results files included), in partition order.
        Opened in that order, they are fetched ahead as a shard's items are."""
        found = [
            MapOutput(
                partition, obj.key.removeprefix(record.prefix(self._workflow_output_prefix(), self.manifest.uid)), obj
            )
            for partition, record in self._shard_records()
            for obj in record.outputs
        ]
        self._order = [(o.obj.key, o.obj.size) for o in found]
        yield from found

    def map_results(self) -> Iterator[Emitted]:
        """Every result the winning attempts emitted, streamed, in partition and shard order."""
        files = [
            (partition, record.results, next((o.size for o in record.outputs if o.key == record.results), 0))
            for partition, record in self._shard_records()
            if record.results is not None
        ]
        order = [(key, size) for _, key, size in files]
        for partition, key, size in files:
            with self._open_key(key, size, order) as response:
                for line in _lines(response):
                    doc = json.loads(line)
                    yield Emitted(partition, doc["index"], doc["result"])

    def open(self, output: MapOutput | OutputObject) -> AbstractContextManager[BaseHTTPResponse | Body]:
        obj = output.obj if isinstance(output, MapOutput) else output
        return self._open_key(obj.key, obj.size, self._order)

    def _open_key(
        self, key: str, size: int, order: list[tuple[str, int]]
    ) -> AbstractContextManager[BaseHTTPResponse | Body]:
        if self._io.settings.concurrent and size <= self._io.settings.stream_above:
            data = self._io.read_ahead(self.client, self.output_bucket, order).take(key)
            if data is not None:
                return nullcontext(Body(data))
        return _stream(self.client, self.output_bucket, key)

    def _workflow_output_prefix(self) -> str:
        """The workflow's output.prefix: the reduce's own prefix less ``<uid>/reduce/a<n>/``."""
        return self.output_prefix.removesuffix(contract.reduce_output_prefix("", self.manifest.uid, self.attempt))

    def commit(self) -> None:
        self._settle_uploads()
        result = ReduceResult(attempt=self.attempt, outputs=self.outputs, output_prefix=self.output_prefix)
        put_json(self.client, self.run_bucket, contract.reduce_result_key(self.run_prefix, self.attempt), doc=result)


@contextmanager
def reduce(client: Minio | None = None) -> Iterator[Reducer]:
    """The reduce step's counterpart of :func:`shard`: leaving the block normally records its outputs."""
    current = Reducer.from_env(client)
    try:
        yield current
        current.commit()
    finally:
        current._io.close()


@contextmanager
def _stream(client: Minio, bucket: str, key: str) -> Iterator[BaseHTTPResponse]:
    response = client.get_object(bucket, key)
    try:
        yield response
    finally:
        response.close()
        response.release_conn()


def _lines(response: BaseHTTPResponse | Body) -> Iterator[bytes]:
    """JSONL lines end at b"\\n" only (a JSON string may hold U+2028 or U+0085)."""
    pending: list[bytes] = []  # pieces of a line that spans chunks, joined once it ends
    for chunk in response.stream(1 << 20):
        first, *others = chunk.split(b"\n")
        if not others:
            pending.append(first)
            continue
        *complete, last = [b"".join([*pending, first]), *others]
        pending = [last]
        yield from (line for line in complete if line)
    tail = b"".join(pending)
    if tail:
        yield tail


class _Concurrent:
    """One shard's (or reduce step's) threads, read-ahead and uploads (paraflow_worker.transfer)."""

    def __init__(self, settings: TransferSettings) -> None:
        self.settings = settings
        self._pool: ThreadPoolExecutor | None = None
        self._uploads: Uploader | None = None
        self._uploaded: list[tuple[int, Future[ObjectWriteResult]]] = []
        self.prefetch: Prefetcher | None = None
        self._ahead_of: list[tuple[str, int]] | None = None

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            # Reads ahead and uploads behind at once, each up to the concurrency.
            self._pool = ThreadPoolExecutor(2 * self.settings.concurrency, thread_name_prefix="paraflow-io")
        return self._pool

    def uploads(self) -> Uploader:
        if self._uploads is None:
            self._uploads = Uploader(settings=self.settings, pool=self.pool())
        return self._uploads

    def uploaded(self, index: int, future: Future[ObjectWriteResult]) -> None:
        self._uploaded.append((index, future))

    def read_ahead(self, client: Minio, bucket: str, keys: list[tuple[str, int]]) -> Prefetcher:
        """The read-ahead over ``keys``: the same list (by identity, not compared item by item on
        every open) keeps the same one."""
        if self.prefetch is None or self._ahead_of is not keys:
            self.prefetch = Prefetcher(
                functools.partial(_read, client, bucket), keys, settings=self.settings, pool=self.pool()
            )
            self._ahead_of = keys
        return self.prefetch

    def settle(self) -> list[tuple[int, ObjectWriteResult]]:
        if self._uploads is not None:
            self._uploads.finish()
        done = [(index, future.result()) for index, future in self._uploaded]
        self._uploaded = []
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _read(client: Minio, bucket: str, key: str) -> bytes:
    with _stream(client, bucket, key) as response:
        return response.read()
