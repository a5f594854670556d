"""The orders example end to end: a day of order lines as JSONL, one Map iteration per line
checking the stock table (CSV in MinIO), and the per-order summary its reduce step wrote checked
against an independent computation over the same objects."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from minio import Minio

from tests.e2e.test_cli import cli
from tests.operator_process import OperatorProcess
from tests.workflows import create, run_generator, wait_phase

pytestmark = pytest.mark.cluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "orders"
ORDERS, STOCK = "orders/2026-11-24.jsonl", "stock/2026-11-24.csv"


def read(s3: Minio, bucket: str, key: str) -> str:
    return s3.get_object(bucket, key).read().decode()


def independent_summary(s3: Minio, bucket: str) -> list[dict[str, Any]]:
    stock = {row["sku"]: int(row["available"]) for row in csv.DictReader(io.StringIO(read(s3, bucket, STOCK)))}
    orders: dict[str, dict[str, Any]] = {}
    for text in read(s3, bucket, ORDERS).splitlines():
        line = json.loads(text)
        order = orders.setdefault(line["order"], {"order": line["order"], "lines": 0, "units": 0, "missing": []})
        order["lines"] += 1
        order["units"] += line["quantity"]
        if line["quantity"] > stock.get(line["sku"], -1):
            order["missing"].append((line["line"], line["sku"]))
    return [
        {**o, "inStock": not o["missing"], "missing": [sku for _, sku in sorted(o["missing"])]}
        for _, o in sorted(orders.items())
    ]


def test_the_orders_example_summary_matches_an_independent_computation(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    run_generator(EXAMPLE / "generate.py", test_env, "--bucket", bucket, "--orders", "700")
    body = yaml.safe_load((EXAMPLE / "workflow.yaml").read_text())
    spec = body["spec"]
    spec["storage"]["endpoint"] = test_env["PARAFLOW_TEST_S3_ENDPOINT"]
    spec["input"]["bucket"] = bucket
    spec["partitioner"]["builtin"]["batchInput"]["stock"] = f"s3://{bucket}/{STOCK}"
    spec["output"] = {"bucket": bucket, "prefix": "processed/"}  # beside the input, not inside it
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "orders", {"Succeeded", "Failed"}, 300)
    assert done["status"]["phase"] == "Succeeded", done["status"]

    expected = independent_summary(s3, bucket)
    lines = cli("reduce-output", "orders", "summary.jsonl", "-n", namespace).stdout.split("\n")
    summary = [json.loads(line) for line in lines if line]
    assert summary == expected
    assert any(not o["inStock"] for o in expected) and any(o["inStock"] for o in expected)
    totals = json.loads(cli("reduce-output", "orders", "totals.json", "-n", namespace).stdout)
    line_count = sum(o["lines"] for o in expected)
    assert totals["lines"] == line_count
    assert totals["partitions"] == done["status"]["partitions"]["total"] == -(-line_count // 500)
    listed = cli("reduce-output", "orders", "-n", namespace).stdout
    assert "summary.jsonl" in listed and "totals.json" in listed
