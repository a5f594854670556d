"""The daily-logs example end to end: generated logs in MinIO, the example workflow as shipped,
its collated aggregates checked against an independent count over the same raw files."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from kubernetes import client
from minio import Minio

from paraflow_worker.demo.logstats import collate
from tests.operator_process import OperatorProcess
from tests.workflows import create, wait_phase

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
    env = {
        **os.environ,
        "PARAFLOW_S3_ACCESS_KEY": test_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
        "PARAFLOW_S3_SECRET_KEY": test_env["PARAFLOW_TEST_S3_SECRET_KEY"],
    }
    subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "generate.py"),
            "--endpoint",
            test_env["PARAFLOW_TEST_S3_ENDPOINT"],
            "--bucket",
            bucket,
            "--prefix",
            "logs/",
            "--files",
            "240",
        ],
        check=True,
        env=env,
    )
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

    stats, manifest = collate(s3, done["status"]["manifest"])
    requests, total_bytes, status, paths = independent_counts(s3, bucket, "logs/")
    assert len(manifest.succeeded) == 5
    assert stats.requests == requests
    assert stats.bytes == total_bytes
    assert stats.status == status
    assert stats.paths == paths
    assert stats.unparsed > 0  # the generator writes a few garbled lines, and they are counted as such
    replicas = sorted(o.object_name or "" for o in s3.list_objects(bucket, prefix="archive/", recursive=True))
    assert len(replicas) == 10  # 5 partitions x 2 shards' stats files
    assert done["status"]["replication"]["objects"] == 10
