"""The worker against the real MinIO: the built-in partitioner's listing and plan, and the SDK."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest
from minio import Minio
from minio.error import S3Error

from paraflow_worker import contract, sdk
from paraflow_worker.contract import Env, PartitionItems, PlanSummary, ReaderConfig, ShardResult
from paraflow_worker.partition import partitions_of, write_plan, write_plan_or_problem
from paraflow_worker.readers import list_items
from paraflow_worker.storage import get_json

pytestmark = pytest.mark.storage


def put(s3: Minio, bucket: str, key: str, data: bytes) -> None:
    s3.put_object(bucket, key, io.BytesIO(data), len(data))


def test_the_partitioner_lists_past_one_page_and_writes_a_complete_plan(s3: Minio, bucket: str) -> None:
    keys = [f"in/{i:05d}.log" for i in range(2500)]  # S3 pages hold 1,000 keys
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: put(s3, bucket, k, b"x" * (len(k) % 7 + 1)), keys))
    put(s3, bucket, "in/skip.tmp", b"not a log")
    put(s3, bucket, "elsewhere/0.log", b"outside the prefix")

    summary = write_plan(
        s3,
        bucket,
        "run/",
        partitions=partitions_of(
            s3, bucket, "in/", key_glob="*.log", max_items=100, max_bytes=10_000, reader=ReaderConfig()
        ),
    )

    assert summary == PlanSummary(partition_count=25, item_count=2500, total_bytes=sum(len(k) % 7 + 1 for k in keys))
    plan = get_json(s3, bucket, contract.plan_key("run/"), model=PlanSummary)
    assert plan.partition_count == 25
    listed = [
        i.key
        for p in range(25)
        for i in get_json(s3, bucket, contract.partition_key("run/", p), model=PartitionItems).items
    ]
    assert listed == keys  # deterministic order, each key once


def test_a_plan_that_fails_midway_leaves_no_partition_files_and_says_why(s3: Minio, bucket: str) -> None:
    """A record too large for a partition, found after 1,200 partition files were written (more
    than one removal request holds)."""
    keys = [f"in/{i:05d}.jsonl" for i in range(1200)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: put(s3, bucket, k, b'{"a": 1}\n'), keys))
    put(s3, bucket, "in/99999.jsonl", b'{"big": "' + b"x" * 500 + b'"}\n')
    reader = ReaderConfig(format="jsonl")
    summary = write_plan_or_problem(
        s3,
        bucket,
        "run/",
        partitions=partitions_of(s3, bucket, "in/", key_glob="", max_items=1, max_bytes=200, reader=reader),
    )
    assert summary.problem is not None and summary.problem.reason == "RecordTooLarge"
    assert get_json(s3, bucket, contract.plan_key("run/"), model=PlanSummary) == summary
    assert list(s3.list_objects(bucket, prefix=contract.partitions_prefix("run/"), recursive=True)) == []


def test_the_partitioner_keeps_keys_ending_in_a_slash_with_or_without_content(s3: Minio, bucket: str) -> None:
    """S3 and MinIO store, list and serve `dir/` like any key: it is an input item, not skipped."""
    for key, data in (("in/folder/", b""), ("in/with-data/", b"bytes"), ("in/plain", b"p")):
        put(s3, bucket, key, data)
    items = {i.key: i.size for i in list_items(s3, bucket, "in/")}
    assert items == {"in/folder/": 0, "in/plain": 1, "in/with-data/": 5}
    assert s3.get_object(bucket, "in/with-data/").read() == b"bytes"  # and a processor can read it


@pytest.fixture
def shard_env(bucket: str, storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        Env.WORKFLOW: "wf",
        Env.PARTITION: "3",
        Env.ATTEMPT: "2",
        Env.SHARD: "1",
        Env.SHARD_COUNT: "2",
        Env.INPUT_BUCKET: bucket,
        Env.RUN_BUCKET: bucket,
        Env.RUN_PREFIX: "run/",
        Env.OUTPUT_BUCKET: bucket,
        Env.OUTPUT_PREFIX: contract.attempt_output_prefix("out/", "uid-1", 3, attempt=2),
        Env.S3_ENDPOINT: storage_env["PARAFLOW_TEST_S3_ENDPOINT"],
        Env.S3_ACCESS_KEY: storage_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
        Env.S3_SECRET_KEY: storage_env["PARAFLOW_TEST_S3_SECRET_KEY"],
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_the_sdk_reads_its_slice_and_records_what_it_wrote(s3: Minio, bucket: str, shard_env: dict[str, str]) -> None:
    items = [contract.Item(key=f"in/{i}", size=1) for i in range(5)]
    for it in items:
        put(s3, bucket, it.key, it.key.encode())
    put(s3, bucket, contract.partition_key("run/", 3), PartitionItems(index=3, items=items).model_dump_json().encode())

    with sdk.shard() as shard:
        assert shard.kind == "objects"
        mine = shard.objects()
        contents = []
        for item in mine:
            with shard.open(item) as stream:
                contents.append(stream.read())
        out = shard.write("result.txt", b"hello")

    assert [i.key for i in mine] == ["in/1", "in/3"]  # shard 1 of 2
    assert contents == [b"in/1", b"in/3"]
    assert out.key == "out/uid-1/p3/a2/result.txt"
    result = get_json(s3, bucket, contract.shard_result_key("run/", 3, 2, shard=1), model=ShardResult)
    assert result.outputs[0].sha256 == hashlib.sha256(b"hello").hexdigest()
    assert result.output_prefix == "out/uid-1/p3/a2/"  # what replication strips to name the replica
    assert s3.get_object(bucket, "out/uid-1/p3/a2/result.txt").read() == b"hello"


def test_a_record_shard_gets_its_records_and_batch_input_and_its_emitted_results_are_recorded(
    s3: Minio, bucket: str, shard_env: dict[str, str]
) -> None:
    records = [contract.Record(index=10 + i, value={"sku": f"s{i}", "qty": i}) for i in range(5)]
    doc = PartitionItems(index=3, kind="records", records=records, batch_input={"warehouse": "w1"})
    put(s3, bucket, contract.partition_key("run/", 3), doc.model_dump_json(by_alias=True).encode())

    with sdk.shard() as shard:
        assert (shard.kind, shard.batch_input) == ("records", {"warehouse": "w1"})
        mine = shard.records()
        for record in mine:
            shard.emit({"double": record.value["qty"] * 2}, record)
        shard.emit({"batch": "done"})

    assert [(r.index, r.value["sku"]) for r in mine] == [(11, "s1"), (13, "s3")]  # shard 1 of 2
    result = get_json(s3, bucket, contract.shard_result_key("run/", 3, 2, shard=1), model=ShardResult)
    assert result.results == "out/uid-1/p3/a2/results-s1.jsonl"
    assert result.results in [o.key for o in result.outputs], "recorded like any output: replicated, hashed"
    lines = [json.loads(x) for x in s3.get_object(bucket, result.results).read().splitlines()]
    assert lines == [
        {"index": 11, "result": {"double": 2}},
        {"index": 13, "result": {"double": 6}},
        {"index": None, "result": {"batch": "done"}},
    ]
    with pytest.raises(TypeError, match="maps over records"):
        shard.objects()


def test_the_sdk_refuses_an_output_name_s3_cannot_store_before_uploading_anything(
    s3: Minio, bucket: str, shard_env: dict[str, str]
) -> None:
    with sdk.shard() as shard:
        for name, why in (("x" * 1100, "more than S3's 1024"), ("a/../b", "'..' path segment"), ("y" * 256, "255")):
            with pytest.raises(ValueError, match=why):
                shard.write(name, b"data")
    assert not list(s3.list_objects(bucket, prefix="out/", recursive=True))


def test_a_failing_processor_records_no_result(s3: Minio, bucket: str, shard_env: dict[str, str]) -> None:
    put(s3, bucket, contract.partition_key("run/", 3), PartitionItems(index=3, items=[]).model_dump_json().encode())

    def crashing_processor() -> None:
        with sdk.shard() as shard:
            shard.write("partial.txt", b"half")
            raise RuntimeError("processor crashed")

    with pytest.raises(RuntimeError):
        crashing_processor()
    assert not list(s3.list_objects(bucket, prefix="run/results/", recursive=True))


def test_the_sdk_streams_a_large_output_in_parts_without_reading_it_whole(
    s3: Minio, bucket: str, shard_env: dict[str, str]
) -> None:
    size = 40 * 1024 * 1024  # three 16 MiB parts

    class Generated(io.RawIOBase):
        """A stream that is never in memory as a whole."""

        def __init__(self) -> None:
            self.left = size
            self.digest = hashlib.sha256()

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            n = self.left if n < 0 else min(n, self.left)
            chunk = os.urandom(n)
            self.left -= n
            self.digest.update(chunk)
            return chunk

    source = Generated()
    shard = sdk.Shard.from_env()
    out = shard.write("big.bin", source)
    assert out.size == size
    assert out.sha256 == source.digest.hexdigest()
    stat = s3.stat_object(bucket, out.key)
    assert stat.size == size
    assert "-" in (stat.etag or "")  # a multipart upload's ETag
    assert json.loads(ShardResult(partition=3, attempt=2, shard=1, outputs=[out]).model_dump_json())["outputs"]


def test_a_partition_ten_times_the_byte_budget_is_read_and_written_within_it(
    s3: Minio, bucket: str, shard_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items fetched ahead and outputs uploaded behind hold at most the budget: what Python holds
    at its peak (tracemalloc) stays a small multiple of it, however large the partition."""
    budget, item_size, count = 1024 * 1024, 256 * 1024, 40  # 10 MiB through a 1 MiB budget
    monkeypatch.setenv("PARAFLOW_SDK_BUDGET_BYTES", str(budget))
    monkeypatch.setenv("PARAFLOW_SDK_CONCURRENCY", "8")
    monkeypatch.setenv(Env.SHARD_COUNT, "1")
    monkeypatch.setenv(Env.SHARD, "0")
    items = [contract.Item(key=f"big/{i:03d}", size=item_size) for i in range(count)]
    for it in items:
        put(s3, bucket, it.key, os.urandom(item_size))
    put(s3, bucket, contract.partition_key("run/", 3), PartitionItems(index=3, items=items).model_dump_json().encode())

    tracemalloc.start()
    try:
        with sdk.shard() as shard:
            digests = []
            for item in shard.objects():
                with shard.open(item) as stream:
                    data = stream.read()
                digests.append(hashlib.sha256(data).hexdigest())
                shard.write(f"copy/{item.key}", data)
                del data
            ahead, behind = shard._io.prefetch, shard._io.uploads()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ahead is not None and ahead.peak_reserved <= budget and behind.peak_held <= budget
    assert peak < 4 * budget, f"peak {peak} bytes for a {count * item_size}-byte partition"
    result = get_json(s3, bucket, contract.shard_result_key("run/", 3, 2, shard=0), model=ShardResult)
    assert [o.sha256 for o in result.outputs] == digests, "every output recorded, in order, with its bytes' hash"
    assert all(o.etag for o in result.outputs), "each record has the etag its upload got"


def test_a_background_upload_that_fails_fails_the_shard_and_records_nothing(
    s3: Minio, bucket: str, shard_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, bucket, contract.partition_key("run/", 3), PartitionItems(index=3, items=[]).model_dump_json().encode())
    monkeypatch.setenv(Env.OUTPUT_BUCKET, f"{bucket}-missing")
    with pytest.raises(S3Error, match="NoSuchBucket"), sdk.shard() as shard:
        shard.write("a.txt", b"a")  # returns at once: the upload fails in the background
    assert not list(s3.list_objects(bucket, prefix="run/results/", recursive=True))
