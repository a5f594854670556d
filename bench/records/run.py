"""The built-in partitioner over records: throughput and peak memory.

    hack/cluster.sh up && eval "$(hack/cluster.sh env)" && .venv/bin/python -m bench.records.run

For each format (JSONL, CSV, a JSON array), 1,000,000 records of about 200 bytes (an order line:
id, customer, sku, quantity, price, a note) in one object in the local MinIO are partitioned by
``paraflow-worker partition``, run as its Job runs it (the same env), 1,000 records a partition.
Measured: wall seconds, records/s, and the process's peak RSS (GNU time). Targets: >= 50,000
records/s on one core, <= 150 MiB. Results: bench/results/records.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.common import machine, measure, write_results
from paraflow_worker.contract import Env, PlanSummary, ReaderConfig
from paraflow_worker.storage import get_json, make_client

FIELDS = ["id", "customer", "sku", "qty", "price", "note"]


def order_lines(count: int) -> list[dict[str, Any]]:
    rnd = random.Random(20261130)
    words = ["gift wrap", "leave at door", "fragile", "", "urgent", "call on arrival", "ünïcödé ok"]
    return [
        {
            "id": f"ord-{i:08d}",
            "customer": f"cust-{rnd.randrange(10**6):06d}",
            "sku": f"SKU-{rnd.randrange(10**5):05d}-{rnd.choice('ABCDEFGH')}",
            "qty": str(rnd.randrange(1, 50)),
            "price": f"{rnd.uniform(1, 500):.2f}",
            "note": f"{rnd.choice(words)} {'x' * rnd.randrange(40, 90)}",
        }
        for i in range(count)
    ]


def encode(fmt: str, rows: list[dict[str, Any]]) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False).encode()
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--formats", default="jsonl,csv,json")
    args = parser.parse_args()
    endpoint = os.environ["PARAFLOW_TEST_S3_ENDPOINT"]
    access, secret = os.environ["PARAFLOW_TEST_S3_ACCESS_KEY"], os.environ["PARAFLOW_TEST_S3_SECRET_KEY"]
    s3 = make_client(endpoint, access, secret)
    bucket = f"bench-records-{uuid.uuid4().hex[:6]}"
    s3.make_bucket(bucket)
    rows = order_lines(args.records)
    worker = str(Path(sys.executable).with_name("paraflow-worker"))
    results = []
    for fmt in args.formats.split(","):
        data = encode(fmt, rows)
        key = f"orders.{fmt}"
        s3.put_object(bucket, key, io.BytesIO(data), len(data))
        run = f"run-{fmt}/"
        env = {
            **os.environ,
            Env.S3_ENDPOINT: endpoint,
            Env.S3_ACCESS_KEY: access,
            Env.S3_SECRET_KEY: secret,
            Env.INPUT_BUCKET: bucket,
            Env.INPUT_PREFIX: "",
            Env.RUN_BUCKET: bucket,
            Env.RUN_PREFIX: run,
            Env.MAX_ITEMS: "1000",
            Env.MAX_BYTES: str(1 << 30),
            Env.READER: ReaderConfig(format=fmt, key=key).model_dump_json(),  # type: ignore[arg-type]
        }
        # Pinned to one core, as a pod with a 1 CPU limit would run it.
        seconds, rss, out = measure(["taskset", "-c", "0", worker, "partition"], env)
        plan = get_json(s3, bucket, f"{run}plan.json", model=PlanSummary)
        assert plan.problem is None and plan.item_count == args.records, (plan, out)
        row = {
            "format": fmt,
            "records": plan.item_count,
            "bytes": len(data),
            "partitions": plan.partition_count,
            "seconds": round(seconds, 2),
            "records_per_s": round(plan.item_count / seconds),
            "peak_rss_mib": round(rss, 1),
        }
        print(row, flush=True)
        results.append(row)
        del data
    doc = {"machine": machine(), "versions": {"paraflow": "0.1.0"}, "rows": results}
    write_results("records", doc, table(results))
    print(table(results))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| format | records | MB | partitions | seconds | records/s (target >= 50,000) | peak RSS MiB (<= 150) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['format']} | {r['records']:,} | {r['bytes'] / 1e6:.0f} | {r['partitions']:,} | {r['seconds']} | "
            f"{r['records_per_s']:,} | {r['peak_rss_mib']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
