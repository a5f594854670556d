"""Orchestration benchmark on KWOK nodes: paraflow's fan-out against one native Indexed Job of the
same pods, in the same run; and 100,000 partitions through the pure planner.

    hack/cluster.sh up && eval "$(hack/cluster.sh env)" && .venv/bin/python -m bench.orchestration.run

For each (partitions, maxConcurrency): a native Indexed Job (completions = partitions,
parallelism = maxConcurrency, pods on KWOK nodes) is timed from create to Complete; the design's
floor (``floor.py``: a minimal driver keeping maxConcurrency one-pod Jobs active, one per
partition) likewise; then a
workflow whose partitioner (a real pod) plans one partition per input object, and whose
partition Jobs (shards 1) run on KWOK nodes, is timed with a fresh operator process. KWOK
completes pods at once, so both figures are pure orchestration. Measured: fan-out makespan
(plan read -> Succeeded) and total (create -> Succeeded), the operator's apiserver writes per
partition (its own counter of creates and status patches, plus the Events it posted), its peak
RSS and CPU seconds, the status size, and the time from creation to the first partition pod.
Results: bench/results/orchestration.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import re
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config
from tests.operator_process import OperatorProcess
from tests.support import install_crd
from tests.unit.builders import make_spec

from bench.common import cluster_versions, machine, write_results
from bench.orchestration import floor
from paraflow import constants as c
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.planner import JobFacts, JobState, Observed, PlanRead
from paraflow_worker.storage import make_client

KWOK = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}


def wait(check: Any, timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark step timed out")


def proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS MiB, CPU seconds) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return peak, cpu


def metric_sum(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def baseline(batch: client.BatchV1Api, ns: str, partitions: int, concurrency: int) -> float:
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"native-{partitions}-{concurrency}"},
        "spec": {
            "completionMode": "Indexed",
            "completions": partitions,
            "parallelism": concurrency,
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", **KWOK, "containers": [{"name": "c", "image": "fake:1"}]}},
        },
    }
    started = time.monotonic()
    batch.create_namespaced_job(ns, body)

    def complete() -> bool:
        job = batch.read_namespaced_job_status(body["metadata"]["name"], ns)
        return any(x.type == "Complete" and x.status == "True" for x in (job.status.conditions or []))

    wait(complete, 3600, 0.2)
    return time.monotonic() - started


def kwok_workflow(name: str, endpoint: str, bucket: str, prefix: str, out: str, concurrency: int) -> dict[str, Any]:
    """One partition per input object under ``prefix``; partition pods on KWOK nodes."""
    return {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": c.KIND,
        "metadata": {"name": name},
        "spec": {
            "storage": {"endpoint": endpoint, "credentialsSecret": "minio-creds"},
            "input": {"bucket": bucket, "prefix": prefix},
            "partitioner": {"builtin": {"maxItemsPerPartition": 1}},
            "processor": {"image": "fake:1", **KWOK},
            "output": {"bucket": bucket, "prefix": out},
            "maxConcurrency": concurrency,
        },
    }


def paraflow_run(
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    ns: str,
    prefix: str,
    bucket: str,
    partitions: int,
    concurrency: int,
    endpoint: str,
) -> dict[str, Any]:
    port = 19400 + concurrency % 100 + partitions % 97
    op = OperatorProcess(
        {
            "PARAFLOW_METRICS_PORT": str(port),
            "PARAFLOW_API_WRITE_QPS": "500",
            "PARAFLOW_API_WRITE_BURST": "500",
            "PARAFLOW_RESYNC_SECONDS": "30",
            "PARAFLOW_DEBOUNCE_SECONDS": os.environ.get("BENCH_DEBOUNCE", "0.1"),
        },
        verbose=False,
    ).start()
    op.wait_started()
    name = f"wf-{partitions}-{concurrency}"
    body = kwok_workflow(name, endpoint, bucket, prefix, f"out-{name}/", concurrency)
    try:
        started = time.monotonic()
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, body)
        selector = f"{c.LABEL_WORKFLOW}={name},{c.LABEL_ROLE}={c.ROLE_PARTITION}"
        wait(lambda: core.list_namespaced_pod(ns, label_selector=selector, limit=1).items, 600, 0.1)
        first_pod = time.monotonic() - started
        obj = wait(lambda: _phase(custom, ns, name, ("Succeeded", "Failed")), 7200, 0.5)
        total = time.monotonic() - started
        status = obj["status"]
        assert status["phase"] == "Succeeded", status
        partitioned = next(x for x in status["conditions"] if x["type"] == c.COND_PARTITIONED)["lastTransitionTime"]
        completed = status["completionTime"]
        fan_out = (_ts(completed) - _ts(partitioned)).total_seconds()
        rss, cpu = proc_stats(op.proc.pid)  # type: ignore[union-attr]
        writes = metric_sum(f"http://127.0.0.1:{port}/metrics", "paraflow_api_writes_total")
        events = len(core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items)
    finally:
        op.stop()
    return {
        "makespan_s": round(fan_out, 1),
        "total_s": round(total, 1),
        "first_pod_s": round(first_pod, 2),
        "writes_per_partition": round((writes + events) / partitions, 3),
        "operator_peak_rss_mib": round(rss, 1),
        "operator_cpu_s": round(cpu, 1),
        "status_bytes": len(json.dumps(status)),
    }


def _phase(custom: client.CustomObjectsApi, ns: str, name: str, phases: tuple[str, ...]) -> dict[str, Any] | None:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, name)
    return obj if (obj.get("status") or {}).get("phase") in phases else None


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def simulated(partitions: int, concurrency: int) -> dict[str, Any]:
    """The planner and status code alone, against simulated observations: every pass finishes
    what ran in the previous one, as a cluster would."""
    spec = make_spec(maxConcurrency=concurrency)
    now = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    part = JobFacts("p", c.ROLE_PARTITIONER, None, 1, JobState.SUCCEEDED, now)
    status, jobs, passes, busiest = WorkflowStatus(), {}, 0, 0.0
    while status.phase != "Succeeded":
        obs = Observed(
            jobs=[part, *jobs.values()],
            generation=1,
            now=now,
            uid="sim",
            plan=PlanRead(partition_count=partitions) if planner.needs_plan(status, [part]) else None,
        )
        t0 = time.perf_counter()
        result = planner.plan(spec, status, obs)
        busiest = max(busiest, time.perf_counter() - t0)
        status, passes = result.status, passes + 1
        # Jobs already finished are recorded in status: the cluster would keep them, the planner
        # does not need them again once status holds them.
        jobs = {k: j for k, j in jobs.items() if j.state is JobState.ACTIVE}
        jobs = {k: JobFacts(j.name, j.role, j.partition, j.attempt, JobState.SUCCEEDED, now) for k, j in jobs.items()}
        for x in result.creates:
            jobs[x.index] = JobFacts(f"p{x.index}", c.ROLE_PARTITION, x.index, 1, JobState.ACTIVE)  # type: ignore[union-attr]
        now += dt.timedelta(seconds=1)
    return {
        "status_bytes": len(status.model_dump_json(by_alias=True, exclude_none=True)),
        "passes": passes,
        "slowest_pass_ms": round(busiest * 1000, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| partitions | maxConcurrency | fan-out makespan s | native Job s | ratio | floor s | vs floor | total s | "
        "first pod s | writes/partition | operator peak RSS MiB | operator CPU s | status bytes | simulated |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r['makespan_s'] / r['baseline_makespan_s']:.2f}" if r.get("baseline_makespan_s") else ""
        vs_floor = f"{r['makespan_s'] / r['floor_makespan_s']:.2f}" if r.get("floor_makespan_s") else ""
        lines.append(
            f"| {r['partitions']} | {r['max_concurrency']} | {r.get('makespan_s', '')} | "
            f"{r.get('baseline_makespan_s', '')} | {ratio} | {r.get('floor_makespan_s', '')} | {vs_floor} | "
            f"{r.get('total_s', '')} | {r.get('first_pod_s', '')} | "
            f"{r.get('writes_per_partition', '')} | {r.get('operator_peak_rss_mib', '')} | "
            f"{r.get('operator_cpu_s', '')} | {r['status_bytes']} | {r['simulated']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000", help="powers of ten, at most 1000000")
    parser.add_argument("--concurrency", default="50,500")
    parser.add_argument("--simulate", type=int, default=100_000)
    parser.add_argument("--name", default="orchestration", help="results file stem (a partial run: another name)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    config.load_kube_config()
    install_crd(client.ApiClient())
    core, batch, custom = client.CoreV1Api(), client.BatchV1Api(), client.CustomObjectsApi()
    endpoint = os.environ["PARAFLOW_TEST_S3_ENDPOINT"]
    creds = (os.environ["PARAFLOW_TEST_S3_ACCESS_KEY"], os.environ["PARAFLOW_TEST_S3_SECRET_KEY"])
    s3 = make_client(endpoint, *creds)
    bucket = f"bench-orch-{uuid.uuid4().hex[:6]}"
    s3.make_bucket(bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(bucket, f"in/{i:06d}", io.BytesIO(b"x"), 1), range(max(sizes))))
    rows: list[dict[str, Any]] = []
    for partitions in sizes:
        # Keys are in/000000, in/000001, ...: "in/000" holds the first 1,000, "in/00" 10,000.
        prefix = "in/" + "0" * (6 - round(math.log10(partitions)))
        for concurrency in concurrencies:
            ns = f"bench-{partitions}-{concurrency}-{uuid.uuid4().hex[:4]}"
            core.create_namespace({"metadata": {"name": ns}})
            core.create_namespaced_secret(
                ns, {"metadata": {"name": "minio-creds"}, "stringData": {"accessKey": creds[0], "secretKey": creds[1]}}
            )
            native = baseline(batch, ns, partitions, concurrency)
            least = floor.run(batch, ns, partitions, concurrency, KWOK)
            row = {
                "partitions": partitions,
                "max_concurrency": concurrency,
                "baseline_makespan_s": round(native, 1),
                "floor_makespan_s": round(least, 1),
                **paraflow_run(custom, core, ns, prefix, bucket, partitions, concurrency, endpoint),
                "simulated": False,
            }
            rows.append(row)
            print(row, flush=True)
            core.delete_namespace(ns)
    sim = simulated(args.simulate, 500)
    rows.append({"partitions": args.simulate, "max_concurrency": 500, "simulated": True, **sim})
    print(rows[-1], flush=True)
    versions = cluster_versions(kwok="v0.8.0")
    write_results(args.name, {"machine": machine(), "versions": versions, "rows": rows}, table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
