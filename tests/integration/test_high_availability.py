"""Two operator replicas and one Lease, on a real cluster: the standby takes over a run when the
leader is SIGKILLed, without creating a Job twice or exceeding maxConcurrency across the
hand-over; and a leader cut off from the apiserver stops acting before the standby may start.

The figures (kill to takeover, kill to first write) are printed here and measured repeatedly by
``bench/failover``; these tests assert the behaviour."""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from minio import Minio

from tests.operator_process import OperatorProcess
from tests.support import PartitionJobWatch, Relay, wait_for
from tests.workflows import create, partition_jobs, upload_inputs, wait_event, wait_phase, workflow

pytestmark = [pytest.mark.cluster, pytest.mark.serial]

DEMO_SLEEP = {"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "1"}
LEASE_NAMESPACE = "default"
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def holder(lease: str) -> str:
    try:
        obj = client.CoordinationV1Api().read_namespaced_lease(lease, LEASE_NAMESPACE)
    except client.ApiException as e:
        if e.status == 404:
            return ""
        raise
    return obj.spec.holder_identity or ""


def log_time(proc: OperatorProcess, needle: str) -> float:
    """Wall-clock time (epoch seconds) of the first log line containing ``needle``."""
    for line in proc.log.read_text(errors="replace").splitlines():
        match = LOG_TIME.match(line)
        if match and needle in line:
            return time.mktime(time.strptime(match.group(1).split(",")[0], "%Y-%m-%d %H:%M:%S")) + (
                int(match.group(1).split(",")[1]) / 1000
            )
    raise AssertionError(f"no log line with {needle!r}:\n{proc.tail()}")


def conflicts(*procs: OperatorProcess) -> int:
    return sum(p.log.read_text(errors="replace").count("already exists (409)") for p in procs)


@pytest.fixture
def lease_env(operator_session: OperatorProcess) -> Iterator[dict[str, str]]:
    """Only this test's replicas may act: the shared operator stops (gracefully, so it frees its
    own Lease) and the `operator` fixture restarts it for the next test."""
    operator_session.stop()
    name = f"ha-{uuid.uuid4().hex[:6]}"
    # client-go's 15/10/2 s scaled down: a hand-over takes about 6 s instead of 15, with the same
    # order (the cut-off leader stops at 4 s, the standby may take over at 6 s).
    yield {
        "PARAFLOW_LEASE_NAME": name,
        "PARAFLOW_LEASE_NAMESPACE": LEASE_NAMESPACE,
        "PARAFLOW_LEASE_DURATION_SECONDS": "6",
        "PARAFLOW_LEASE_RENEW_DEADLINE_SECONDS": "4",
        "PARAFLOW_LEASE_RETRY_PERIOD_SECONDS": "1",
    }
    with contextlib.suppress(client.ApiException):  # never created if no replica came to lead
        client.CoordinationV1Api().delete_namespaced_lease(name, LEASE_NAMESPACE)


@pytest.fixture
def replicas(lease_env: dict[str, str]) -> Iterator[list[OperatorProcess]]:
    procs: list[OperatorProcess] = []
    yield procs
    for proc in procs:
        proc.stop()
        print(f"\n--- replica {proc.identity} ({proc.log}) ---\n{proc.tail(15)}")


def start_pair(replicas: list[OperatorProcess], lease_env: dict[str, str], first_env: dict[str, str]) -> None:
    leader = OperatorProcess({**lease_env, **first_env}).start()
    replicas.append(leader)
    leader.wait_started()
    wait_for(lambda: holder(lease_env["PARAFLOW_LEASE_NAME"]) == leader.identity, 30, "the first replica to lead")
    standby = OperatorProcess(lease_env).start()
    replicas.append(standby)
    standby.wait_started()


def test_a_sigkilled_leader_is_replaced_by_the_standby_without_duplicates_or_excess_concurrency(
    replicas: list[OperatorProcess],
    lease_env: dict[str, str],
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    start_pair(replicas, lease_env, {})
    leader, standby = replicas
    upload_inputs(s3, bucket, 60)  # 20 partitions
    body = workflow("ha", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=3)
    body["spec"]["processor"]["env"] = [DEMO_SLEEP]
    recorder = PartitionJobWatch(namespace, "ha")
    try:
        create(custom, namespace, body)
        wait_for(lambda: len(partition_jobs(batch, namespace, "ha")) >= 5, 120, "the run to be under way")
        killed_at, killed_wall = time.monotonic(), time.time()
        leader.kill()
        done = wait_phase(custom, namespace, "ha", {"Succeeded", "Failed"}, 300)
    finally:
        recorder.stop()
    assert done["status"]["phase"] == "Succeeded", done["status"]
    # Posted by the new leader, from passes its taking the Lease started (kopf's context).
    wait_event(core, namespace, "ha", "Normal", "Succeeded")
    took_over = log_time(standby, "holding the Lease") - killed_wall
    first_job = recorder.first_new_after(killed_at)
    assert first_job is not None, "the standby created the remaining partitions"
    print(f"\nfailover: kill -> Lease held {took_over:.1f}s, kill -> first Job created {first_job - killed_at:.1f}s")
    assert 0 < took_over < 60, "the standby took the Lease over (bench/failover measures how fast)"
    names = sorted(j.metadata.name for j in partition_jobs(batch, namespace, "ha"))
    assert names == sorted(f"ha-p{i}-a1" for i in range(20)), "one Job per partition, none created twice"
    assert recorder.most_unfinished <= 3, f"{recorder.most_unfinished} partitions ran at once across the hand-over"
    assert conflicts(leader, standby) == 0, "the standby knew every Job already: no create was even refused"


def kubeconfig_through(proxy: Relay, tmp_path: Path) -> str:
    """The test's kubeconfig, its server replaced by the proxy (TLS still checked against the
    server's own name)."""
    config: dict[str, Any] = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    cluster = config["clusters"][0]["cluster"]
    host = urlsplit(cluster["server"]).hostname
    assert host is not None
    cluster["server"] = f"https://{proxy.host}:{proxy.port}"
    if proxy.host != host:
        cluster["tls-server-name"] = host
    out = tmp_path / "through-proxy.kubeconfig"
    out.write_text(yaml.safe_dump(config))
    return str(out)


def test_a_leader_cut_off_from_the_apiserver_stops_acting_before_the_standby_may_take_over(
    replicas: list[OperatorProcess],
    lease_env: dict[str, str],
    custom: client.CustomObjectsApi,
    batch: client.BatchV1Api,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    server = urlsplit(client.Configuration.get_default_copy().host)
    assert server.hostname is not None
    proxy = Relay(server.hostname, server.port or 443)
    kubeconfig = kubeconfig_through(proxy, tmp_path)
    start_pair(replicas, lease_env, {"KUBECONFIG": kubeconfig})
    leader, standby = replicas
    upload_inputs(s3, bucket, 45)  # 15 partitions
    body = workflow("cut", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=3)
    body["spec"]["processor"]["env"] = [DEMO_SLEEP]
    create(custom, namespace, body)
    wait_for(lambda: len(partition_jobs(batch, namespace, "cut")) >= 3, 120, "the run to be under way")
    proxy.cut()
    wait_for(lambda: holder(lease_env["PARAFLOW_LEASE_NAME"]) == standby.identity, 60, "the standby to take over")
    proxy.heal()
    done = wait_phase(custom, namespace, "cut", {"Succeeded", "Failed"}, 300)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    wait_event(core, namespace, "cut", "Normal", "Succeeded")
    stopped = log_time(leader, "lost the Lease")
    started = log_time(standby, "holding the Lease")
    print(f"\ncut-off leader stopped {started - stopped:.1f}s before the standby took over")
    assert stopped < started, "the cut-off leader stopped acting before the standby could start"
    healed_log = leader.log.read_text(errors="replace").split("lost the Lease", 1)[1]
    assert "holding the Lease" not in healed_log, "once healed, the old leader sees the new holder and stands by"
    assert "created" not in healed_log, "the old leader created nothing after it lost the Lease"
    names = sorted(j.metadata.name for j in partition_jobs(batch, namespace, "cut"))
    assert names == sorted(f"cut-p{i}-a1" for i in range(15)), "one Job per partition, none created twice"
