"""``python -m paraflow_worker.demo.orders``: the Map state's own canon, "for each item in an
order, check the stock".

Process (in a partition pod): the input is JSONL of order lines (``{"order", "line", "sku",
"quantity"}``), one Map iteration per line. The shard loads the stock table (CSV ``sku,available``,
named by the batchInput's ``stock`` as ``s3://bucket/key``) once, and emits for each line whether
the stock covers it.

Reduce (``... orders reduce``, in the reduce pod): groups every emitted result by order and writes
``summary.jsonl`` (one line per order, by order id: its lines, units, whether every line is in
stock, the SKUs that are not) and ``totals.json``. It holds one small entry per order in memory.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from paraflow_worker import sdk


def load_stock(shard: sdk.Shard, url: str) -> dict[str, int]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    response = shard.client.get_object(bucket, key)
    try:
        rows = csv.DictReader(io.StringIO(response.read().decode("utf-8-sig")))
        return {row["sku"]: int(row["available"]) for row in rows}
    finally:
        response.close()
        response.release_conn()


def check(line: dict[str, Any], stock: dict[str, int]) -> dict[str, Any]:
    available = stock.get(line["sku"])
    return {
        "order": line["order"],
        "line": line["line"],
        "sku": line["sku"],
        "quantity": line["quantity"],
        "available": available,
        "inStock": available is not None and line["quantity"] <= available,
    }


def process() -> None:
    with sdk.shard() as shard:
        if not shard.batch_input or "stock" not in shard.batch_input:
            raise SystemExit('orders: batchInput must name the stock table, e.g. {"stock": "s3://shop/stock.csv"}')
        stock = load_stock(shard, shard.batch_input["stock"])
        records = shard.records()
        for record in records:
            shard.emit(check(record.value, stock), record)
        print(f"partition {shard.partition} shard {shard.shard}: {len(records)} order lines checked")


@dataclass
class OrderSummary:
    lines: int = 0
    units: int = 0
    missing: list[tuple[int, str]] = field(default_factory=list)

    def add(self, result: dict[str, Any]) -> None:
        self.lines += 1
        self.units += result["quantity"]
        if not result["inStock"]:
            self.missing.append((result["line"], result["sku"]))

    def to_json(self, order: str) -> dict[str, Any]:
        missing = [sku for _, sku in sorted(self.missing)]
        return {"order": order, "lines": self.lines, "units": self.units, "inStock": not missing, "missing": missing}


def reduce() -> None:
    with sdk.reduce() as run:
        orders: dict[str, OrderSummary] = {}
        for emitted in run.map_results():
            orders.setdefault(emitted.result["order"], OrderSummary()).add(emitted.result)
        lines = (json.dumps(orders[order].to_json(order)) + "\n" for order in sorted(orders))
        run.write("summary.jsonl", "".join(lines).encode(), content_type="application/x-ndjson")
        totals = {
            "orders": len(orders),
            "inStock": sum(1 for s in orders.values() if not s.missing),
            "lines": sum(s.lines for s in orders.values()),
            "partitions": len(run.manifest.succeeded),
            "failedPartitions": run.manifest.failed,
        }
        run.write("totals.json", json.dumps(totals, indent=2).encode() + b"\n", content_type="application/json")
        print(f"{totals['orders']} orders, {totals['inStock']} fully in stock")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orders")
    parser.add_argument("step", nargs="?", choices=["process", "reduce"], default="process")
    if parser.parse_args(argv).step == "reduce":
        reduce()
    else:
        process()


if __name__ == "__main__":
    main()
