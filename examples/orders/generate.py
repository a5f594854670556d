"""Writes a day of orders and the stock table into MinIO: order lines as JSONL, stock as CSV.

    python examples/orders/generate.py --endpoint http://127.0.0.1:19000 --bucket shop --orders 2000

Writes ``orders/2026-11-24.jsonl`` (one line per order line: order, line, sku, quantity) and
``stock/2026-11-24.csv`` (sku, available). Some SKUs are sold out and a few are not stocked at
all. Credentials come from PARAFLOW_S3_ACCESS_KEY / PARAFLOW_S3_SECRET_KEY. Deterministic per --seed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random

from paraflow_worker.storage import make_client

SKUS = [f"SKU-{n:04d}" for n in range(300)]


def order_lines(rnd: random.Random, orders: int) -> str:
    out = io.StringIO()
    for n in range(orders):
        for line in range(1, rnd.randint(1, 5) + 1):
            item = {"order": f"o-{n:06d}", "line": line, "sku": rnd.choice(SKUS), "quantity": rnd.randint(1, 8)}
            out.write(json.dumps(item) + "\n")
    return out.getvalue()


def stock_table(rnd: random.Random) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["sku", "available"])
    for sku in SKUS[:-10]:  # the last ten SKUs are not stocked at all
        writer.writerow([sku, 0 if rnd.random() < 0.1 else rnd.randint(1, 40)])
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default="http://127.0.0.1:19000")
    ap.add_argument("--bucket", default="shop")
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=24)
    args = ap.parse_args()
    client = make_client(args.endpoint, os.environ["PARAFLOW_S3_ACCESS_KEY"], os.environ["PARAFLOW_S3_SECRET_KEY"])
    if not client.bucket_exists(args.bucket):
        client.make_bucket(args.bucket)
    rnd = random.Random(args.seed)
    for key, text, kind in (
        ("orders/2026-11-24.jsonl", order_lines(rnd, args.orders), "application/x-ndjson"),
        ("stock/2026-11-24.csv", stock_table(rnd), "text/csv"),
    ):
        data = text.encode()
        client.put_object(args.bucket, key, io.BytesIO(data), len(data), content_type=kind)
        print(f"s3://{args.bucket}/{key}: {len(data)} bytes")


if __name__ == "__main__":
    main()
