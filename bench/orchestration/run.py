"""Orchestration benchmark on KWOK nodes: paraflow against the design's floor, Argo Workflows and
one native Indexed Job of the same pods, in the same run on the same cluster; and 100,000
partitions through the pure planner.

    hack/cluster.sh up && eval "$(hack/cluster.sh env)" && .venv/bin/python -m bench.orchestration.run

For each (partitions, maxConcurrency, task seconds), each system in a namespace of its own
(deleted, and waited for, before the next starts):
- ``native``: one Indexed Job (completions = partitions, parallelism = maxConcurrency);
- ``floor`` (``floor.py``): a minimal driver keeping maxConcurrency one-pod Jobs active;
  ``floor-shaped``, a diagnostic: the same driver creating the Jobs paraflow builds;
- ``argo`` (``argo.py``): Argo's workflow-controller, one Workflow fanning out over the items
  with ``parallelism`` = maxConcurrency;
- ``paraflow``: a workflow whose partitioner (a real pod) plans one partition per input object,
  partition Jobs (shards 1) on KWOK nodes, a fresh operator process.
KWOK completes pods at once, or after the task length (a pod annotation), so every figure is
orchestration. Measured: makespan (paraflow: plan read -> Succeeded, its partitioner excluded;
the others: create -> done), efficiency on timed tasks (ceil(N/P) x task / makespan), the
controller's apiserver writes per item (its own counters), its peak RSS and CPU seconds.
Results: bench/results/<name>.{json,md}; ``--merge`` keeps the rows of other configurations.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config
from tests.operator_process import OperatorProcess
from tests.support import install_crd
from tests.unit.builders import make_spec

from bench.common import RESULTS, cluster_versions, machine, proc_stats, write_results
from bench.orchestration import argo
from bench.orchestration.kwok import KWOK, pod_annotations, pod_metadata
from paraflow import constants as c
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.planner import JobFacts, JobState, Observed, PlanRead
from paraflow.reasons import ConditionType
from paraflow_worker.storage import make_client

SYSTEMS = ("native", "floor", "argo", "paraflow")


def wait(check: Any, timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark step timed out")


def metric_sum(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    series = (line for line in text.splitlines() if line.startswith((name + "{", name + " ")))
    return sum(float(line.rsplit(" ", 1)[1]) for line in series)


def native(batch: client.BatchV1Api, ns: str, partitions: int, concurrency: int, task_seconds: float) -> dict[str, Any]:
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"native-{partitions}-{concurrency}"},
        "spec": {
            "completionMode": "Indexed",
            "completions": partitions,
            "parallelism": concurrency,
            "backoffLimit": 0,
            "template": {
                "metadata": pod_metadata(task_seconds),
                "spec": {"restartPolicy": "Never", **KWOK, "containers": [{"name": "c", "image": "fake:1"}]},
            },
        },
    }
    started = time.monotonic()
    batch.create_namespaced_job(ns, body)

    def complete() -> bool:
        job = batch.read_namespaced_job_status(body["metadata"]["name"], ns)
        return any(x.type == "Complete" and x.status == "True" for x in (job.status.conditions or []))

    wait(complete, 7200, 0.2)
    # The controller is kube-controller-manager's Job controller, shared: no figures of its own.
    return {"makespan_s": round(time.monotonic() - started, 1), "writes_per_item": round(1 / partitions, 4)}


def floor(
    ns: str, partitions: int, concurrency: int, task_seconds: float, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The floor driver's row; given a workflow ``spec``, with the Jobs paraflow builds for it."""
    cmd = [sys.executable, "-m", "bench.orchestration.floor", ns, str(partitions), str(concurrency), str(task_seconds)]
    if spec is not None:
        cmd += ["--spec", json.dumps(spec)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    row = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    return row if spec is None else {**row, "job_shape": "paraflow"}


def kwok_workflow(
    name: str,
    endpoint: str,
    bucket: str,
    prefix: str,
    out: str,
    concurrency: int,
    task_seconds: float = 0,
    succeeded_jobs: str = "Retain",
) -> dict[str, Any]:
    """One partition per input object under ``prefix``; partition pods on KWOK nodes."""
    return {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": c.KIND,
        "metadata": {"name": name},
        "spec": {
            "storage": {"endpoint": endpoint, "credentialsSecret": "minio-creds"},
            "input": {"bucket": bucket, "prefix": prefix},
            "partitioner": {"builtin": {"maxItemsPerPartition": 1}},
            "processor": {"image": "fake:1", **KWOK, "podAnnotations": pod_annotations(task_seconds)},
            "output": {"bucket": bucket, "prefix": out},
            "maxConcurrency": concurrency,
            "succeededJobs": succeeded_jobs,
        },
    }


def paraflow_run(
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    ns: str,
    prefix: str,
    bucket: str,
    partitions: int,
    concurrency: int,
    task_seconds: float,
    succeeded_jobs: str,
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
            "PARAFLOW_SUCCEEDED_JOBS_KEPT_WHILE_RUNNING": os.environ.get("BENCH_KEPT", "1000"),  # the default
        },
        verbose=False,
    ).start()
    op.wait_started()
    name = f"wf-{partitions}-{concurrency}"
    body = kwok_workflow(name, endpoint, bucket, prefix, f"out-{name}/", concurrency, task_seconds, succeeded_jobs)
    try:
        started = time.monotonic()
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, body)
        selector = f"{c.LABEL_WORKFLOW}={name},{c.LABEL_ROLE}={c.ROLE_PARTITION}"
        wait(lambda: core.list_namespaced_pod(ns, label_selector=selector, limit=1).items, 600, 0.1)
        first_pod = time.monotonic() - started
        obj = wait(lambda: _phase(custom, ns, name, ("Succeeded", "Failed")), 7200, 0.5)
        total = time.monotonic() - started
        status = obj["status"]
        partitioned = next(x for x in status["conditions"] if x["type"] == ConditionType.PARTITIONED)[
            "lastTransitionTime"
        ]
        completed = status["completionTime"]
        fan_out = (_ts(completed) - _ts(partitioned)).total_seconds()
        cleanup = 0.0
        if succeeded_jobs == "Delete":
            # The deletes a finished run still owes are part of its cost: counted, and timed.
            wait(lambda: not batch.list_namespaced_job(ns, label_selector=selector, limit=1).items, 3600, 0.5)
            cleanup = time.monotonic() - started - total
        rss, cpu = proc_stats(op.proc.pid)  # type: ignore[union-attr]
        writes = metric_sum(f"http://127.0.0.1:{port}/metrics", "paraflow_api_writes_total")
        passes = metric_sum(f"http://127.0.0.1:{port}/metrics", "paraflow_reconcile_passes_total")
        events = len(core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items)
    finally:
        op.stop()
    return {
        "completed": status["phase"] == "Succeeded",
        "makespan_s": round(fan_out, 1),
        "writes_per_item": round((writes + events) / partitions, 3),
        "controller_peak_rss_mib": round(rss, 1),
        "controller_cpu_s": round(cpu, 1),
        "total_s": round(total, 1),
        "first_pod_s": round(first_pod, 2),
        "passes": int(passes),
        "status_bytes": len(json.dumps(status)),
        "succeeded_jobs": succeeded_jobs,
        "cleanup_s": round(cleanup, 1),
        "commit": subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip(),
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
        "| partitions | maxConcurrency | task s | system | completed | makespan s | vs floor | efficiency | "
        "writes/item | controller peak RSS MiB | controller CPU s | notes |",
        "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    floors = {
        _config(r): r["makespan_s"]
        for r in rows
        if r["system"] == "floor" and r.get("makespan_s") and not r.get("job_shape")
    }
    for r in rows:
        if r["simulated"]:
            notes = (
                f"simulated: status {r['status_bytes']} bytes, {r['passes']} passes, slowest {r['slowest_pass_ms']} ms"
            )
            lines.append(f"| {r['partitions']} | {r['max_concurrency']} | | {r['system']} | | | | | | | | {notes} |")
            continue
        least = floors.get(_config(r))
        vs = f"{r['makespan_s'] / least:.2f}" if least and r.get("completed") else ""
        notes = []
        if r["system"] == "paraflow":
            cleanup = f" (all deleted {r['cleanup_s']} s after)" if r.get("cleanup_s") else ""
            notes.append(
                f"succeededJobs {r['succeeded_jobs']}{cleanup}, first pod {r['first_pod_s']} s, "
                f"status {r['status_bytes']} B"
            )
        if r.get("from_run"):
            notes.append(f"measured in the run of {r['from_run']}, same machine and cluster build")
        if r.get("job_shape"):
            notes.append("paraflow's Job shape (a diagnostic: not the floor)")
        if r["system"] == "argo":
            notes.append(f"DEFAULT_REQUEUE_TIME {r['requeue']}")
            if not r["completed"]:
                notes.append(f"{r['phase']}: {r['message']}")
        lines.append(
            f"| {r['partitions']} | {r['max_concurrency']} | {r['task_seconds']:g} | {r['system']} | "
            f"{r['completed']} | "
            f"{r['makespan_s']} | {vs} | {_blank(r.get('efficiency'))} | {r['writes_per_item']} | "
            f"{_blank(r.get('controller_peak_rss_mib'))} | {_blank(r.get('controller_cpu_s'))} | {'; '.join(notes)} |"
        )
    return "\n".join(lines) + "\n"


def _config(row: dict[str, Any]) -> tuple[int, int, float]:
    return row["partitions"], row["max_concurrency"], row.get("task_seconds", 0)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a row measured: another run of the same replaces it under --merge."""
    return row["system"], *_config(row), row["simulated"], row.get("succeeded_jobs"), row.get("job_shape")


def _blank(value: Any) -> str:
    return "" if value is None else str(value)


def efficiency(partitions: int, concurrency: int, task_seconds: float, makespan: float) -> float | None:
    """The ideal makespan of timed tasks (full waves of maxConcurrency) over the measured one."""
    if not task_seconds or not makespan:
        return None
    return round(math.ceil(partitions / concurrency) * task_seconds / makespan, 3)


def fresh_namespace(core: client.CoreV1Api, creds: tuple[str, str], tag: str) -> str:
    ns = f"bench-{tag}-{uuid.uuid4().hex[:4]}"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "minio-creds"}, "stringData": {"accessKey": creds[0], "secretKey": creds[1]}}
    )
    return ns


def drop_namespace(core: client.CoreV1Api, ns: str) -> None:
    """Deletes the namespace and waits until it is gone: the next system starts on a quiet cluster."""
    core.delete_namespace(ns)

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.ApiException as e:
            return e.status == 404
        return False

    wait(gone, 1800, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000", help="powers of ten, at most 1000000")
    parser.add_argument("--concurrency", default="50,500")
    parser.add_argument("--task-seconds", default="0", help="task lengths, e.g. 0,10")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="any of native, floor, argo, paraflow, and floor-shaped: the floor driver creating paraflow's Jobs",
    )
    parser.add_argument("--succeeded-jobs", default="Delete", choices=("Retain", "Delete"), help="paraflow's setting")
    parser.add_argument("--argo-requeue", default="1s", help="Argo's DEFAULT_REQUEUE_TIME (its default: 10s)")
    parser.add_argument("--simulate", type=int, default=100_000, help="0: no simulated row")
    parser.add_argument("--name", default="orchestration", help="results file stem")
    parser.add_argument("--merge", action="store_true", help="keep the file's rows of other configurations")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    lengths = [float(x) for x in args.task_seconds.split(",")]
    systems = args.systems.split(",")
    config.load_kube_config()
    install_crd(client.ApiClient())
    core, batch, custom = client.CoreV1Api(), client.BatchV1Api(), client.CustomObjectsApi()
    endpoint = os.environ["PARAFLOW_TEST_S3_ENDPOINT"]
    creds = (os.environ["PARAFLOW_TEST_S3_ACCESS_KEY"], os.environ["PARAFLOW_TEST_S3_SECRET_KEY"])
    s3 = make_client(endpoint, *creds)
    bucket = f"bench-orch-{uuid.uuid4().hex[:6]}"
    s3.make_bucket(bucket)
    if "paraflow" in systems:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: s3.put_object(bucket, f"in/{i:06d}", io.BytesIO(b"x"), 1), range(max(sizes))))
    argo_binary = None
    if "argo" in systems:
        argo_binary, crds = argo.build()
        argo.install_crds(crds)
    rows: list[dict[str, Any]] = []
    for partitions in sizes:
        # Keys are in/000000, in/000001, ...: "in/000" holds the first 1,000, "in/00" 10,000.
        prefix = "in/" + "0" * (6 - round(math.log10(partitions)))
        for concurrency in concurrencies:
            for task in lengths:
                for system in systems:
                    ns = fresh_namespace(core, creds, f"{system}-{partitions}-{concurrency}")
                    if system == "native":
                        got = {"completed": True, **native(batch, ns, partitions, concurrency, task)}
                    elif system == "floor":
                        got = {"completed": True, **floor(ns, partitions, concurrency, task)}
                    elif system == "floor-shaped":
                        shaped = kwok_workflow("floor", endpoint, bucket, prefix, "out/", concurrency, task)["spec"]
                        got = {"completed": True, **floor(ns, partitions, concurrency, task, shaped)}
                    elif system == "argo":
                        assert argo_binary is not None
                        got = argo.run(argo_binary, core, custom, ns, partitions, concurrency, task, args.argo_requeue)
                    else:
                        got = paraflow_run(
                            custom,
                            core,
                            batch,
                            ns,
                            prefix,
                            bucket,
                            partitions,
                            concurrency,
                            task,
                            args.succeeded_jobs,
                            endpoint,
                        )
                    row = {
                        "system": system.removesuffix("-shaped"),
                        "partitions": partitions,
                        "max_concurrency": concurrency,
                        "task_seconds": task,
                        "efficiency": efficiency(partitions, concurrency, task, got["makespan_s"])
                        if got["completed"]
                        else None,
                        "simulated": False,
                        **got,
                    }
                    rows.append(row)
                    print(row, flush=True)
                    drop_namespace(core, ns)
    if args.simulate:
        sim = simulated(args.simulate, 500)
        rows.append(
            {"system": "paraflow", "partitions": args.simulate, "max_concurrency": 500, "simulated": True, **sim}
        )
        print(rows[-1], flush=True)
    if args.merge and (RESULTS / f"{args.name}.json").exists():
        ran = {_key(r) for r in rows}
        old = json.loads((RESULTS / f"{args.name}.json").read_text())["rows"]
        rows = [r for r in old if _key(r) not in ran] + rows
    rows.sort(
        key=lambda r: (
            r["simulated"],
            r["partitions"],
            r["max_concurrency"],
            r.get("task_seconds", 0),
            SYSTEMS.index(r["system"]),
            bool(r.get("job_shape")),
        )
    )
    versions = cluster_versions(kwok="v0.8.0", argo=argo.version())
    write_results(args.name, {"machine": machine(), "versions": versions, "rows": rows}, table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
