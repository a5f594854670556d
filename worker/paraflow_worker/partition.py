"""The built-in partitioner: read the input's items and batch them into partitions.

Items are streamed (``readers``) and each partition is written as soon as it is full, with a
bounded number of writes and bytes in flight, so memory holds a few partitions however large the
input. ``plan.json`` is written last: its presence means every partition object before it
exists. Input that cannot be read ends in a ``plan.json`` that says why (``problem``), with no
partitions: a final answer, not a crash to retry.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from minio import Minio

from paraflow_worker import contract, readers
from paraflow_worker.contract import Env, InputReason, Item, PartitionItems, PlanProblem, PlanSummary, ReaderConfig
from paraflow_worker.readers import InputProblem, RawRecord
from paraflow_worker.storage import client_from_env, put_bytes, put_json, remove_prefix

log = logging.getLogger(__name__)

WRITERS = 16
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024


class Sized(Protocol):
    @property
    def size(self) -> int: ...


S = TypeVar("S", bound=Sized)


def batch(items: Iterable[S], max_items: int, max_bytes: int) -> Iterator[list[S]]:
    """Greedy batching in input order. An item bigger than ``max_bytes`` gets a partition alone."""
    if max_items < 1 or max_bytes < 1:
        raise ValueError("max_items and max_bytes must be at least 1")
    current: list[S] = []
    size = 0
    for item in items:
        if current and (len(current) >= max_items or size + item.size > max_bytes):
            yield current
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        yield current


def records_within(found: Iterable[RawRecord], max_bytes: int) -> Iterator[RawRecord]:
    """Records, refusing one larger than a whole partition may be (a record cannot be split)."""
    for record in found:
        if record.size > max_bytes:
            raise InputProblem(
                InputReason.RECORD_TOO_LARGE,
                f"{record.where}: a record of {record.size} bytes, more than maxBytesPerPartition ({max_bytes})",
            )
        yield record


@dataclass(frozen=True)
class Encoded:
    """One partition, ready to write: its counts and its document for a given index."""

    items: int
    size: int
    render: Callable[[int], bytes]


def object_partitions(batches: Iterable[list[Item]], batch_input: dict[str, Any] | None) -> Iterator[Encoded]:
    for part in batches:

        def render(index: int, part: list[Item] = part) -> bytes:
            # Only the fields an older SDK knows (its models refuse unknown ones), so processor
            # images built before records keep reading object partitions; batchInput is new
            # and comes only when asked for.
            doc = PartitionItems(index=index, items=part, batch_input=batch_input)
            return doc.model_dump_json(by_alias=True, exclude_none=True, exclude={"kind", "records"}).encode()

        yield Encoded(len(part), sum(i.size for i in part), render)


def record_partitions(batches: Iterable[list[RawRecord]], batch_input: dict[str, Any] | None) -> Iterator[Encoded]:
    """Documents assembled from the records' JSON text as read: nothing is parsed again."""
    extra = "" if batch_input is None else f',"batchInput":{json.dumps(batch_input, ensure_ascii=False)}'
    for part in batches:
        body = ",".join(f'{{"index":{r.index},"value":{r.text}}}' for r in part)

        def render(index: int, body: str = body) -> bytes:
            head = f'{{"version":{contract.PLAN_VERSION},"index":{index},"kind":"records","records":['
            return f"{head}{body}]{extra}}}".encode()

        yield Encoded(len(part), sum(r.size for r in part), render)


def write_plan(client: Minio, bucket: str, run: str, *, partitions: Iterable[Encoded]) -> PlanSummary:
    count = items = total = in_flight = 0
    pending: list[Future[None]] = []
    with ThreadPoolExecutor(WRITERS) as pool:
        for index, part in enumerate(partitions):
            if index >= contract.MAX_PARTITIONS:
                raise InputProblem(
                    InputReason.TOO_MANY_PARTITIONS,
                    f"more than {contract.MAX_PARTITIONS} partitions: raise maxItemsPerPartition/maxBytesPerPartition",
                )
            data = part.render(index)
            pending.append(pool.submit(put_bytes, client, bucket, contract.partition_key(run, index), data=data))
            count, items, total, in_flight = index + 1, items + part.items, total + part.size, in_flight + len(data)
            if len(pending) >= 4 * WRITERS or in_flight >= MAX_BYTES_IN_FLIGHT:  # bound memory
                _wait(pending)
                in_flight = 0
        _wait(pending)
    summary = PlanSummary(partition_count=count, item_count=items, total_bytes=total)
    put_json(client, bucket, contract.plan_key(run), doc=summary)
    return summary


def write_plan_or_problem(client: Minio, bucket: str, run: str, *, partitions: Iterable[Encoded]) -> PlanSummary:
    """The plan, or one that says why the input cannot be partitioned. Partition files written
    before the problem showed are removed: a failed plan leaves no half of itself behind."""
    try:
        return write_plan(client, bucket, run, partitions=partitions)
    except InputProblem as problem:
        remove_prefix(client, bucket, contract.partitions_prefix(run))
        refused = PlanProblem(reason=problem.reason, message=problem.message[:2048])
        empty = PlanSummary(partition_count=0, item_count=0, total_bytes=0, problem=refused)
        put_json(client, bucket, contract.plan_key(run), doc=empty)
        return empty


def _wait(pending: list[Future[None]]) -> None:
    for f in pending:
        f.result()
    pending.clear()


def partitions_of(
    client: Minio, bucket: str, prefix: str, *, key_glob: str, max_items: int, max_bytes: int, reader: ReaderConfig
) -> Iterator[Encoded]:
    """The partitions the input makes, lazily: nothing is rendered until it is written."""
    if reader.format == "objects" and reader.items is None:
        objects: Iterable[Item] = readers.list_items(client, bucket, prefix, key_glob=key_glob)
        if reader.max_items:
            objects = itertools.islice(objects, reader.max_items)
        return object_partitions(batch(objects, max_items, max_bytes), reader.batch_input)
    found = records_within(
        readers.records(client, bucket, prefix, config=reader, key_glob=key_glob, max_record_bytes=max_bytes), max_bytes
    )
    return record_partitions(batch(found, max_items, max_bytes), reader.batch_input)


def main() -> None:
    env = os.environ
    client = client_from_env()
    reader = ReaderConfig.model_validate_json(env.get(Env.READER) or "{}")
    bucket, prefix = env[Env.INPUT_BUCKET], env.get(Env.INPUT_PREFIX, "")
    run_bucket, run = env[Env.RUN_BUCKET], env[Env.RUN_PREFIX]
    partitions = partitions_of(
        client,
        bucket,
        prefix,
        key_glob=env.get(Env.KEY_GLOB, ""),
        max_items=int(env[Env.MAX_ITEMS]),
        max_bytes=int(env[Env.MAX_BYTES]),
        reader=reader,
    )
    summary = write_plan_or_problem(client, run_bucket, run, partitions=partitions)
    if summary.problem is not None:
        log.error("plan: the input cannot be partitioned: %s: %s", summary.problem.reason, summary.problem.message)
        return
    log.info(
        "plan: %d partitions, %d items, %d bytes from s3://%s/%s (%s)",
        summary.partition_count,
        summary.item_count,
        summary.total_bytes,
        bucket,
        prefix,
        reader.format,
    )
