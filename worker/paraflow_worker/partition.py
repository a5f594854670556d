"""The built-in partitioner: list the input prefix and batch its objects into partitions.

Listing is streamed and each partition is written as soon as it is full, so memory holds one
partition at a time however many keys the prefix has. ``plan.json`` is written last: its
presence means every partition object before it exists.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from minio import Minio

from paraflow_worker import contract
from paraflow_worker.contract import Env, Item, PartitionItems, PlanSummary
from paraflow_worker.storage import client_from_env, put_json

WRITERS = 16


def batch(items: Iterable[Item], max_items: int, max_bytes: int) -> Iterator[list[Item]]:
    """Greedy batching in input order. An item bigger than ``max_bytes`` gets a partition alone."""
    if max_items < 1 or max_bytes < 1:
        raise ValueError("max_items and max_bytes must be at least 1")
    current: list[Item] = []
    size = 0
    for item in items:
        if current and (len(current) >= max_items or size + item.size > max_bytes):
            yield current
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        yield current


def list_items(client: Minio, bucket: str, prefix: str, key_glob: str = "") -> Iterator[Item]:
    """Objects under ``prefix`` in S3 listing order (lexicographic, so deterministic).

    A key ending in ``/`` is an object like any other (S3 and MinIO store, list and serve it,
    with or without content), so it is an item too; only a listing's common prefixes, which
    have no ETag, are not objects."""
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        if obj.object_name is None or (obj.is_dir and obj.etag is None):
            continue
        if key_glob and not fnmatch.fnmatchcase(obj.object_name[len(prefix) :], key_glob):
            continue
        yield Item(key=obj.object_name, size=obj.size or 0, etag=(obj.etag or "").strip('"'))


def write_plan(client: Minio, bucket: str, run: str, batches: Iterable[list[Item]]) -> PlanSummary:
    count = items = total = 0
    pending: list[Future[None]] = []
    with ThreadPoolExecutor(WRITERS) as pool:
        for index, part in enumerate(batches):
            if index >= contract.MAX_PARTITIONS:
                raise SystemExit(
                    f"paraflow-worker partition: more than {contract.MAX_PARTITIONS} partitions; "
                    "raise maxItemsPerPartition/maxBytesPerPartition"
                )
            doc = PartitionItems(index=index, items=part)
            pending.append(pool.submit(put_json, client, bucket, contract.partition_key(run, index), doc))
            count, items, total = index + 1, items + len(part), total + sum(i.size for i in part)
            if len(pending) >= 4 * WRITERS:  # bound memory: wait for the oldest writes
                for f in pending:
                    f.result()
                pending.clear()
        for f in pending:
            f.result()
    summary = PlanSummary(partition_count=count, item_count=items, total_bytes=total)
    put_json(client, bucket, contract.plan_key(run), summary)
    return summary


def main() -> None:
    env = os.environ
    client = client_from_env()
    bucket, prefix = env[Env.INPUT_BUCKET], env.get(Env.INPUT_PREFIX, "")
    items = list_items(client, bucket, prefix, env.get(Env.KEY_GLOB, ""))
    batches = batch(items, int(env[Env.MAX_ITEMS]), int(env[Env.MAX_BYTES]))
    summary = write_plan(client, env[Env.RUN_BUCKET], env[Env.RUN_PREFIX], batches)
    print(
        f"plan: {summary.partition_count} partitions, {summary.item_count} items, "
        f"{summary.total_bytes} bytes from s3://{bucket}/{prefix}"
    )
