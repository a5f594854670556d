"""A shard's data path at 0, 10 and 50 ms of request latency: the SDK before and after concurrent
item I/O, a hand-written thread pool, and the limit.

    hack/cluster.sh up && eval "$(hack/cluster.sh env)" && .venv/bin/python -m bench.sdk.run

Each row runs one shard as its pod runs it (``python -m bench.sdk.processor``, the contract's
env) against the local MinIO through a proxy that adds the latency to every request
(bench/sdk/latency.py). The shard reads each item and writes it back as an output. Data sets:
500 x 8 KiB and 20 x 64 MiB. Rows:

- ``sdk, one at a time``: PARAFLOW_SDK_CONCURRENCY=1, the path before issue #33;
- ``sdk``: the default (16 requests in flight, a 64 MiB byte budget);
- ``hand-written, 16 threads``: minio-py in a thread pool of the same concurrency;
- ``limit, 128 threads``: the same with far more in flight than the SDK's default.

Measured: wall seconds, items/s, MB/s and peak RSS (GNU time). Goal at 50 ms on small items:
the SDK at >= 0.9x the hand-written reader and >= 5x the path before. Results:
bench/results/sdk-latency.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import uuid
from typing import Any
from urllib.parse import urlsplit

from bench.common import machine, measure, write_results
from bench.sdk.latency import LatencyProxy
from paraflow_worker import contract
from paraflow_worker.contract import Env, Item, PartitionItems
from paraflow_worker.storage import make_client

DATASETS = {"500 x 8 KiB": (500, 8 * 1024), "20 x 64 MiB": (20, 64 * 1024 * 1024)}
ROWS = {
    "sdk, one at a time": (["sdk"], {"PARAFLOW_SDK_CONCURRENCY": "1"}),
    "sdk": (["sdk"], {}),
    "hand-written, 16 threads": (["threads", "16"], {}),
    "limit, 128 threads": (["threads", "128"], {}),
}


def prepare(client: Any, bucket: str, count: int, size: int) -> list[Item]:
    payload = os.urandom(size)
    items = [Item(key=f"in/{i:05d}", size=size) for i in range(count)]
    for item in items:
        client.put_object(bucket, item.key, io.BytesIO(payload), size)
    doc = PartitionItems(index=0, items=items).model_dump_json().encode()
    client.put_object(bucket, contract.partition_key("run/", 0), io.BytesIO(doc), len(doc))
    return items


def shard_env(endpoint: str, bucket: str, attempt: int) -> dict[str, str]:
    return {
        **os.environ,
        Env.WORKFLOW: "bench",
        Env.PARTITION: "0",
        Env.ATTEMPT: str(attempt),
        Env.SHARD: "0",
        Env.SHARD_COUNT: "1",
        Env.INPUT_BUCKET: bucket,
        Env.RUN_BUCKET: bucket,
        Env.RUN_PREFIX: "run/",
        Env.OUTPUT_BUCKET: bucket,
        Env.OUTPUT_PREFIX: f"out/a{attempt}/",
        Env.S3_ENDPOINT: endpoint,
        Env.S3_ACCESS_KEY: os.environ["PARAFLOW_TEST_S3_ACCESS_KEY"],
        Env.S3_SECRET_KEY: os.environ["PARAFLOW_TEST_S3_SECRET_KEY"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[0, 10, 50])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    args = parser.parse_args()
    endpoint = os.environ["PARAFLOW_TEST_S3_ENDPOINT"]
    target = urlsplit(endpoint)
    client = make_client(endpoint, os.environ["PARAFLOW_TEST_S3_ACCESS_KEY"], os.environ["PARAFLOW_TEST_S3_SECRET_KEY"])
    results = []
    attempt = 0
    for name in args.datasets:
        count, size = DATASETS[name]
        bucket = f"bench-sdk-{uuid.uuid4().hex[:8]}"
        client.make_bucket(bucket)
        prepare(client, bucket, count, size)
        for latency_ms in args.latency_ms:
            proxy = LatencyProxy(target.hostname or "127.0.0.1", target.port or 80, latency_ms / 1000)
            for row, (argv, extra) in ROWS.items():
                attempt += 1
                env = {**shard_env(f"http://127.0.0.1:{proxy.port}", bucket, attempt), **extra}
                seconds, rss, _ = measure([sys.executable, "-m", "bench.sdk.processor", *argv], env)
                results.append(
                    {
                        "data": name,
                        "latency_ms": latency_ms,
                        "row": row,
                        "seconds": round(seconds, 2),
                        "items_per_s": round(count / seconds, 1),
                        "mb_per_s": round(2 * count * size / seconds / 1e6, 1),  # read and written
                        "peak_rss_mib": round(rss, 1),
                    }
                )
                print(results[-1], flush=True)
            proxy.stop()
    write_results("sdk-latency", {"machine": machine(), "results": results}, table(results))


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "# A shard's data path at request latency (bench/sdk/run.py)",
        "",
        "Each shard reads every item and writes it back; MB/s counts both ways. `vs hand` and `vs before`:",
        "the row's speed over the hand-written pool's and over the SDK's one-at-a-time path, same data and latency.",
        "",
        "| data | latency | row | seconds | items/s | MB/s | peak RSS MiB | vs hand | vs before |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        peers = {
            x["row"]: x["seconds"] for x in results if (x["data"], x["latency_ms"]) == (r["data"], r["latency_ms"])
        }
        hand = peers["hand-written, 16 threads"] / r["seconds"]
        before = peers["sdk, one at a time"] / r["seconds"]
        lines.append(
            f"| {r['data']} | {r['latency_ms']} ms | {r['row']} | {r['seconds']} | {r['items_per_s']} | "
            f"{r['mb_per_s']} | {r['peak_rss_mib']} | {hand:.2f}x | {before:.2f}x |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
