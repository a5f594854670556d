"""The daily-logs example end to end: generated logs in MinIO, the example workflow as shipped,
the summary its reduce step wrote checked against an independent count over the same raw files,
and replicated with the partitions' stats."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from minio import Minio

from tests.e2e.test_cli import cli
from tests.operator_process import OperatorProcess
from tests.workflows import create, run_generator, wait_phase

pytestmark = pytest.mark.runtime

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "daily-logs"


def independent_counts(s3: Minio, bucket: str, prefix: str) -> tuple[int, int, Counter[str], Counter[str]]:
    """Counts with plain string splitting, not the processor's regex."""
    requests, total_bytes, status, paths = 0, 0, Counter[str](), Counter[str]()
    for obj in s3.list_objects(bucket, prefix=prefix, recursive=True):
        text = gzip.decompress(s3.get_object(bucket, obj.object_name or "").read()).decode()
        for line in text.splitlines():
            parts = line.split('"')
            if len(parts) < 3 or "[" not in parts[0]:
                continue
            request = parts[1].split()
            code, size = parts[2].split()[:2]
            requests += 1
            total_bytes += int(size) if size != "-" else 0
            status[code] += 1
            paths[request[1]] += 1
    return requests, total_bytes, status, paths


def test_the_daily_logs_example_aggregates_match_an_independent_count(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    run_generator(EXAMPLE / "generate.py", test_env, "--bucket", bucket, "--prefix", "logs/", "--files", "240")
    body = yaml.safe_load((EXAMPLE / "workflow.yaml").read_text())
    body["spec"]["storage"]["endpoint"] = test_env["PARAFLOW_TEST_S3_ENDPOINT"]
    body["spec"]["input"] = {"bucket": bucket, "prefix": "logs/"}
    body["spec"]["output"] = {"bucket": bucket, "prefix": "processed/"}
    body["spec"]["maxConcurrency"] = 6
    body["spec"]["replication"]["destinations"][0].update(bucket=bucket, prefix="archive/")
    create(custom, namespace, body)
    done = wait_phase(custom, namespace, "daily-logs", {"Succeeded", "Failed"}, 300)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["partitions"]["total"] == 5  # 240 files, 50 per partition

    summary = json.loads(cli("reduce-output", "daily-logs", "summary.json", "-n", namespace).stdout)
    requests, total_bytes, status, paths = independent_counts(s3, bucket, "logs/")
    assert summary["partitions"] == 5 and summary["failedPartitions"] == []
    assert summary["requests"] == requests
    assert summary["bytes"] == total_bytes
    assert summary["status"] == dict(status)
    # The top paths: each with its true count, and none left out that occurs more often.
    top = summary["paths"]
    assert len(top) == 10 and all(paths[p] == n for p, n in top.items())
    assert min(top.values()) >= max(n for p, n in paths.items() if p not in top)
    assert summary["unparsed"] > 0  # the generator writes a few garbled lines, and they are counted as such
    replicas = sorted(o.object_name or "" for o in s3.list_objects(bucket, prefix="archive/", recursive=True))
    assert len(replicas) == 11  # 5 partitions x 2 shards' stats files, and the summary
    assert "archive/reduce/summary.json" in replicas
    assert done["status"]["replication"]["objects"] == 11
