"""The images hack/images.sh built run for real: the worker image's partitioner, as a non-root
user on a read-only root filesystem, against the real MinIO from `docker run --network host`."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from minio import Minio

from paraflow_worker import contract
from paraflow_worker.contract import Env, PlanSummary
from paraflow_worker.storage import get_json

pytestmark = pytest.mark.runtime

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def docker(*args: str) -> str:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"docker {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def test_both_images_exist_and_run_as_non_root() -> None:
    for role in ("worker", "operator"):
        user = docker("image", "inspect", f"paraflow/{role}:{VERSION}", "--format", "{{.Config.User}}").strip()
        assert user == "65532:65532"


def test_the_worker_image_partitions_a_bucket_against_the_local_minio(
    s3: Minio, bucket: str, test_env: dict[str, str]
) -> None:
    for i in range(7):
        s3.put_object(bucket, f"logs/{i}.gz", io.BytesIO(b"0123456789"), 10)
    env = {
        Env.S3_ENDPOINT: test_env["PARAFLOW_TEST_S3_ENDPOINT"],
        Env.S3_ACCESS_KEY: test_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
        Env.S3_SECRET_KEY: test_env["PARAFLOW_TEST_S3_SECRET_KEY"],
        Env.INPUT_BUCKET: bucket,
        Env.INPUT_PREFIX: "logs/",
        Env.RUN_BUCKET: bucket,
        Env.RUN_PREFIX: "run/",
        Env.MAX_ITEMS: "3",
        Env.MAX_BYTES: "1000",
    }
    flags = [f"--env={k}={v}" for k, v in env.items()]
    out = docker("run", "--rm", "--network", "host", "--read-only", *flags, f"paraflow/worker:{VERSION}", "partition")
    assert "plan: 3 partitions, 7 items, 70 bytes" in out
    assert get_json(s3, bucket, contract.plan_key("run/"), model=PlanSummary).partition_count == 3
    last = json.loads(s3.get_object(bucket, contract.partition_key("run/", 2)).read())
    assert [i["key"] for i in last["items"]] == ["logs/6.gz"]


def test_the_operator_image_starts_its_cli() -> None:
    out = docker("run", "--rm", "--read-only", "--entrypoint", "paraflow", f"paraflow/operator:{VERSION}", "--help")
    assert "operator" in out
