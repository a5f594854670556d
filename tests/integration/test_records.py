"""Records as Map items, end to end on the cluster: JSONL (gzip), JSON arrays, CSV and inline items
are partitioned by the built-in partitioner, each shard gets its slice with every record's index
in the whole input and the batchInput, results emitted per record come back through
`paraflow results`, and input that cannot be read fails the workflow saying where."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes import client
from minio import Minio

from tests.e2e.test_cli import cli
from tests.operator_process import OperatorProcess
from tests.workflows import create, partition_jobs, wait_phase, workflow

pytestmark = pytest.mark.cluster

ECHO = ["python", "-m", "paraflow_worker.demo.echo"]
RUNS = itertools.count()
values = st.dictionaries(
    st.sampled_from(["id", "name", "qty", "note"]),
    st.integers(-1000, 1000) | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    max_size=4,
)


def records_workflow(name: str, endpoint: str, bucket: str, reader: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = workflow(name, endpoint, bucket, **spec)
    body["spec"]["input"]["reader"] = reader
    body["spec"]["processor"] = {"image": "paraflow/worker:0.1.0", "command": ECHO, "shardsPerPartition": 2}
    body["spec"]["partitioner"] = {"builtin": {"maxItemsPerPartition": 5, "batchInput": {"run": name}}}
    return body


def emitted(namespace: str, name: str) -> list[dict[str, Any]]:
    done = cli("results", name, "-n", namespace)
    # JSONL lines end at "\n" only: str.splitlines() would also cut at U+0085 or U+2028 inside a string.
    lines = [line for line in done.stdout.split("\n") if line]
    return sorted((json.loads(line) for line in lines), key=lambda r: r["index"])


def put(s3: Minio, bucket: str, key: str, data: bytes) -> None:
    s3.put_object(bucket, key, io.BytesIO(data), len(data))


# Each example is a workflow run: no shrinking (minutes per step), the failing example is shown.
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate])
@given(st.lists(st.lists(values, max_size=9), min_size=1, max_size=3), st.sampled_from(["jsonl", "json", "csv"]))
def test_records_of_any_format_come_back_as_results_in_input_order(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
    files: list[list[dict[str, Any]]],
    fmt: str,
) -> None:
    name = f"rec-{fmt}-{next(RUNS)}"
    expected: list[Any] = []
    for i, rows in enumerate(files):
        if fmt == "csv":
            rows = [{k: str(row.get(k, "")) for k in ("id", "name", "qty", "note")} for row in rows]
            buffer = io.StringIO(newline="")
            writer = csv.DictWriter(buffer, ["id", "name", "qty", "note"])
            writer.writeheader()
            writer.writerows(rows)
            data = buffer.getvalue().encode()
        elif fmt == "json":
            data = json.dumps(rows, ensure_ascii=False).encode()
        else:
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        put(s3, bucket, f"{name}/part-{i}.{fmt}.gz", gzip.compress(data))
        expected += rows
    if not expected:
        return  # an empty input fails with NoPartitions: test_input_that_cannot_be_read_…
    body = records_workflow(name, test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, {"format": fmt})
    body["spec"]["input"]["prefix"] = f"{name}/"
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, name, {"Succeeded", "Failed"}, 180)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    results = emitted(namespace, name)
    assert [r["index"] for r in results] == list(range(len(expected))), "each record once, numbered in input order"
    assert [r["result"]["value"] for r in results] == expected
    assert all(r["result"]["batch"] == {"run": name} for r in results)


def test_inline_items_and_max_items(
    operator: OperatorProcess, custom: client.CustomObjectsApi, namespace: str, bucket: str, test_env: dict[str, str]
) -> None:
    body = records_workflow("inline", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, {"maxItems": 7})
    body["spec"]["input"] = {"items": [{"sku": f"s{i}"} for i in range(12)], "reader": {"maxItems": 7}}
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "inline", {"Succeeded", "Failed"}, 180)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert [r["result"]["value"] for r in emitted(namespace, "inline")] == [{"sku": f"s{i}"} for i in range(7)]


@pytest.mark.parametrize(
    ("key", "data", "reader", "reason", "says"),
    [
        ("bad.jsonl", b'{"a": 1}\n{"a": 2}\n{oops}\n', {"format": "jsonl"}, "InvalidRecord", "bad.jsonl line 3"),
        ("bad.json", b'{"not": "an array"}', {"format": "json"}, "NotAnArray", "is not a JSON array"),
        ("bad.csv", b"a,b\n1,2\n3,4,5\n", {"format": "csv"}, "InvalidRecord", "bad.csv line 3: 3 fields"),
        ("bad.jsonl.gz", b'{"a": 1}\n', {"format": "jsonl"}, "NotGzip", "is not gzip-compressed"),
        ("big.jsonl", b'{"a": "' + b"x" * 300 + b'"}\n', {"format": "jsonl"}, "RecordTooLarge", "big.jsonl line 1"),
        ("empty.jsonl", b"", {"format": "jsonl"}, "NoPartitions", "found no input items under s3://"),
    ],
)
def test_input_that_cannot_be_read_fails_the_workflow_saying_where(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
    key: str,
    data: bytes,
    reader: dict[str, Any],
    reason: str,
    says: str,
) -> None:
    put(s3, bucket, f"bad/{key}", data)
    body = records_workflow("bad", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, reader)
    body["spec"]["input"]["prefix"] = "bad/"
    body["spec"]["partitioner"]["builtin"]["maxBytesPerPartition"] = 200
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "bad", {"Succeeded", "Failed"}, 180)
    failed = next(x for x in done["status"]["conditions"] if x["type"] == "Failed")
    assert (done["status"]["phase"], failed["reason"]) == ("Failed", reason), done["status"]
    assert says in failed["message"]
    assert partition_jobs(batch, namespace, "bad") == [], "no partition ran on a half-read input"
