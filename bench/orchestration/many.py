"""Many workflows at once on KWOK nodes: one operator, one global write budget.

    hack/cluster.sh up && eval "$(hack/cluster.sh env)" && .venv/bin/python -m bench.orchestration.many

N workflows of P partitions each (one input object per partition, partition pods on KWOK, each
workflow's partitioner a real pod) are created together against one operator process with its
default write cap. Measured: time until all have succeeded, the operator's writes as the
apiserver's audit log saw them (by the operator's user agent), the densest 1 s and 10 s of
those writes against what the cap allows, and the operator's peak RSS and CPU seconds.
Results: bench/results/many-workflows.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config
from tests.operator_process import OperatorProcess
from tests.support import install_crd, most_in_any_window, operator_writes

from bench.common import cluster_versions, machine, proc_stats, write_results
from bench.orchestration.run import kwok_workflow, wait
from paraflow import constants as c
from paraflow.settings import Settings
from paraflow_worker.storage import make_client


def table(doc: dict[str, Any]) -> str:
    r = doc["result"]
    return (
        "| workflows | partitions each | maxConcurrency each | all succeeded | makespan s | operator writes | "
        "densest 1 s (cap allows) | densest 10 s (cap allows) | operator peak RSS MiB | operator CPU s |\n"
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n"
        f"| {r['workflows']} | {r['partitions']} | {r['max_concurrency']} | {r['all_succeeded']} | "
        f"{r['makespan_s']} | {r['operator_writes']} | {r['densest_1s']} ({r['cap_1s']}) | "
        f"{r['densest_10s']} ({r['cap_10s']}) | {r['operator_peak_rss_mib']} | {r['operator_cpu_s']} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=10, help="maxConcurrency of each workflow")
    args = parser.parse_args()
    config.load_kube_config()
    install_crd(client.ApiClient())
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    endpoint = os.environ["PARAFLOW_TEST_S3_ENDPOINT"]
    creds = (os.environ["PARAFLOW_TEST_S3_ACCESS_KEY"], os.environ["PARAFLOW_TEST_S3_SECRET_KEY"])
    s3 = make_client(endpoint, *creds)
    bucket = f"bench-many-{uuid.uuid4().hex[:6]}"
    s3.make_bucket(bucket)
    keys = [f"w{w:03d}/in/{p:03d}" for w in range(args.workflows) for p in range(args.partitions)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(bucket, k, io.BytesIO(b"x"), 1), keys))
    ns = f"bench-many-{uuid.uuid4().hex[:4]}"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "minio-creds"}, "stringData": {"accessKey": creds[0], "secretKey": creds[1]}}
    )
    cap = Settings()  # the operator's defaults: the cap under test is the one users get
    op = OperatorProcess({"PARAFLOW_RESYNC_SECONDS": "30"}, verbose=False).start()
    op.wait_started()
    since = dt.datetime.now(dt.UTC)
    names = [f"many-{w:03d}" for w in range(args.workflows)]
    try:
        started = time.monotonic()
        for w, name in enumerate(names):
            body = kwok_workflow(name, endpoint, bucket, f"w{w:03d}/in/", f"w{w:03d}/out/", args.concurrency)
            custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, body)

        def phases() -> dict[str, str] | None:
            items = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL)["items"]
            found = {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}
            return found if all(p in ("Succeeded", "Failed") for p in found.values()) else None

        final = wait(phases, 7200, 2.0)
        makespan = time.monotonic() - started
        rss, cpu = proc_stats(op.proc.pid)  # type: ignore[union-attr]
    finally:
        op.stop()
    times = operator_writes(Path(os.environ["PARAFLOW_TEST_AUDIT_LOG"]), since)
    result = {
        "workflows": args.workflows,
        "partitions": args.partitions,
        "max_concurrency": args.concurrency,
        "all_succeeded": all(p == "Succeeded" for p in final.values()),
        "makespan_s": round(makespan, 1),
        "operator_writes": len(times),
        "write_qps_cap": cap.api_write_qps,
        "write_burst_cap": cap.api_write_burst,
        "densest_1s": most_in_any_window(times, 1.0),
        "cap_1s": round(cap.api_write_burst + cap.api_write_qps * 1.0),
        "densest_10s": most_in_any_window(times, 10.0),
        "cap_10s": round(cap.api_write_burst + cap.api_write_qps * 10.0),
        "operator_peak_rss_mib": round(rss, 1),
        "operator_cpu_s": round(cpu, 1),
    }
    print(result, flush=True)
    core.delete_namespace(ns)
    doc = {"machine": machine(), "versions": cluster_versions(), "result": result}
    write_results("many-workflows", doc, table(doc))
    print(table(doc))


if __name__ == "__main__":
    main()
