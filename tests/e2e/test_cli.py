"""The `paraflow` CLI against the real cluster, as a user runs it: output and exit codes."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from minio import Minio

from tests.operator_process import OperatorProcess
from tests.workflows import create, get, upload_inputs, wait_phase, workflow

pytestmark = pytest.mark.cluster

PARAFLOW = str(Path(sys.executable).with_name("paraflow"))


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([PARAFLOW, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, (
            f"paraflow {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def write_workflow(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_submit_watch_runs_to_the_end_and_exits_0_with_the_manifest(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    upload_inputs(s3, bucket, 9)
    path = write_workflow(tmp_path, workflow("cli-run", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket))
    done = cli("submit", str(path), "-n", namespace, "--watch")
    assert f"ParallelWorkflow {namespace}/cli-run created" in done.stderr
    assert "cli-run succeeded: 3 of 3 partitions succeeded" in done.stderr
    assert f"result manifest: s3://{bucket}/output/_paraflow/" in done.stderr
    assert get(custom, namespace, "cli-run")["status"]["phase"] == "Succeeded"

    logs = cli("logs", "cli-run", "-n", namespace, "--partition", "1")
    assert "partition 1 shard 0/1: 3 items" in logs.stdout


def test_status_names_failed_partitions_with_their_error_then_redrive_fixes_them(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 9)
    body = workflow("cli-fail", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, suspend=True)
    body["spec"]["retry"]["maxAttempts"] = 1
    wf = create(custom, namespace, body)
    wait_phase(custom, namespace, "cli-fail", {"Suspended"}, 30)
    chaos = f"output/_paraflow/{wf['metadata']['uid']}/chaos/p1"
    s3.put_object(bucket, chaos, io.BytesIO(b"42"), 2)
    cli("resume", "cli-fail", "-n", namespace)
    wait_phase(custom, namespace, "cli-fail", {"Failed"}, 120)

    table = cli("status", "cli-fail", "-n", namespace).stdout
    assert "Failed" in table
    assert "FailureToleranceExceeded" in table
    assert "failed partitions" in table
    assert "exit 42 (Error)" in table
    as_json = json.loads(cli("status", "cli-fail", "-n", namespace, "-o", "json").stdout)
    assert as_json["failedIndexes"] == "1"
    watched = cli("watch", "cli-fail", "-n", namespace, check=False)
    assert watched.returncode == 1
    assert "cli-fail failed" in watched.stderr

    s3.remove_object(bucket, chaos)
    assert f"redrive #1 of {namespace}/cli-fail started" in cli("redrive", "cli-fail", "-n", namespace).stderr
    assert wait_phase(custom, namespace, "cli-fail", {"Succeeded"}, 120)["status"]["redrive"]["count"] == 1
    # Nothing left to re-run: the operator refuses, and the CLI says so with a failing exit code.
    refused = cli("redrive", "cli-fail", "-n", namespace, check=False)
    assert refused.returncode == 1, refused.stderr
    assert "ignored: it succeeded with nothing failed" in refused.stderr


def test_set_concurrency_suspend_and_resume_patch_the_spec(
    crd: None, custom: client.CustomObjectsApi, namespace: str
) -> None:
    create(custom, namespace, workflow("knobs", "http://127.0.0.1:1", "some-bucket", suspend=True))
    cli("set-concurrency", "knobs", "7", "-n", namespace)
    assert get(custom, namespace, "knobs")["spec"]["maxConcurrency"] == 7
    cli("resume", "knobs", "-n", namespace)
    assert get(custom, namespace, "knobs")["spec"]["suspend"] is False
    cli("suspend", "knobs", "-n", namespace)
    assert get(custom, namespace, "knobs")["spec"]["suspend"] is True


def test_errors_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    bad = workflow("x", "http://127.0.0.1:1", "some-bucket", maxConcurrency=0)
    done = cli("validate", str(write_workflow(tmp_path, bad)), check=False)
    assert done.returncode != 0
    assert "spec.max_concurrency" in done.stderr or "spec.maxConcurrency" in done.stderr
    assert "Traceback" not in done.stderr
    missing = cli("status", "no-such-workflow", "-n", "default", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0
    assert 'parallelworkflows.paraflow.dev "no-such-workflow" not found' in missing.stderr


def test_plan_summarises_the_partitions_without_creating_anything(
    crd: None,
    s3: Minio,
    bucket: str,
    test_env: dict[str, str],
    tmp_path: Path,
    batch: client.BatchV1Api,
    namespace: str,
) -> None:
    upload_inputs(s3, bucket, 10)
    path = write_workflow(tmp_path, workflow("planned", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket))
    env = {
        **os.environ,
        "PARAFLOW_S3_ACCESS_KEY": test_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
        "PARAFLOW_S3_SECRET_KEY": test_env["PARAFLOW_TEST_S3_SECRET_KEY"],
    }
    done = subprocess.run([PARAFLOW, "plan", str(path), "-n", namespace], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "4 partitions, 10 items" in done.stdout
    assert not batch.list_namespaced_job(namespace).items

    small = workflow("planned", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)
    small["spec"]["partitioner"]["builtin"]["maxBytesPerPartition"] = 20
    done = subprocess.run(
        [PARAFLOW, "plan", str(write_workflow(tmp_path, small)), "-n", namespace],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    warned = " ".join((done.stdout + done.stderr).split())
    assert "larger than maxBytesPerPartition (20 bytes) each get a partition of their own" in warned


def test_the_progress_display_renders_in_a_terminal_and_ends_cleanly(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    upload_inputs(s3, bucket, 12)
    body = workflow("tty", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=1)
    body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "1"}]
    create(custom, namespace, body)
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [PARAFLOW, "watch", "tty", "-n", namespace],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"},
    )
    os.close(child_fd)
    screen = b""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:
            break  # the child closed the terminal: it exited
        if not chunk:
            break
        screen += chunk
    assert proc.wait(timeout=30) == 0
    os.close(main_fd)
    text = screen.decode(errors="replace")
    assert "\x1b[" in text  # a live display, redrawn in place, not a plain log
    assert "partitions" in text
    assert "━" in text  # the progress bar
    assert "4/4" in text
    assert "\x1b[?25h" in text  # the cursor is shown again: the display ended cleanly
    assert "tty succeeded" in text
    assert wait_phase(custom, namespace, "tty", {"Succeeded"}, 5)["status"]["partitions"]["succeeded"] == 4
