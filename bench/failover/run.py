"""Failover of the operator's leader, measured on the local cluster.

    hack/cluster.sh up && eval "$(hack/cluster.sh env)" && .venv/bin/python -m bench.failover.run

Each round starts two operator replicas on one Lease, runs a workflow of 20 partitions
(maxConcurrency 3, pods of about 1 s) and, once five partition Jobs exist, stops the leader:
SIGKILL (a crashed process or node: the standby waits out the lease) or SIGTERM (a rolling
update: the leader frees the Lease as it stops). A Helm round installs the chart (2 replicas)
and runs `helm upgrade` during a run. Measured per round, from the stop (or, for Helm, from the
old leader's last write of the Lease):
- ``takeover_s``: until the new holder's first write of the Lease (a watch on it);
- ``first_write_s``: until the apiserver received the new leader's first write of a workflow,
  Job or Event (its audit log; the user agent names the replica);
- ``conflicts``: Job creates answered 409 (a duplicate attempt; a successful one is impossible by
  name), ``most_unfinished``: partition Jobs unfinished at once (a watch; must stay <= 3).
Targets: SIGKILL takeover and first write under 20 s; a rolling update's gap under 5 s.
Results: bench/results/failover.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config
from tests.operator_process import OperatorProcess
from tests.support import LeaseWatch, PartitionJobWatch, install_crd, operator_writes_by_replica, wait_for
from tests.workflows import create, wait_phase, workflow

from bench.common import cluster_versions, machine, write_results
from paraflow_worker.storage import make_client

CHART = Path(__file__).resolve().parents[2] / "charts" / "paraflow"
PARTITIONS, CONCURRENCY = 20, 3
LEASE_NAMESPACE = "default"


def run_body(name: str, endpoint: str, bucket: str) -> dict[str, Any]:
    body = workflow(name, endpoint, bucket, maxConcurrency=CONCURRENCY)
    body["spec"]["input"]["prefix"] = f"in-{name}/"
    body["spec"]["partitioner"] = {"builtin": {"maxItemsPerPartition": 1}}
    body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "1"}]
    return body


class Bench:
    def __init__(self) -> None:
        config.load_kube_config()
        install_crd(client.ApiClient())
        self.core, self.custom, self.batch = client.CoreV1Api(), client.CustomObjectsApi(), client.BatchV1Api()
        self.endpoint = os.environ["PARAFLOW_TEST_S3_ENDPOINT"]
        creds = (os.environ["PARAFLOW_TEST_S3_ACCESS_KEY"], os.environ["PARAFLOW_TEST_S3_SECRET_KEY"])
        self.s3 = make_client(self.endpoint, *creds)
        self.bucket = f"bench-failover-{uuid.uuid4().hex[:6]}"
        self.s3.make_bucket(self.bucket)
        self.ns = f"bench-failover-{uuid.uuid4().hex[:4]}"
        self.core.create_namespace({"metadata": {"name": self.ns}})
        self.core.create_namespaced_secret(
            self.ns, {"metadata": {"name": "minio-creds"}, "stringData": {"accessKey": creds[0], "secretKey": creds[1]}}
        )
        self.audit = Path(os.environ["PARAFLOW_TEST_AUDIT_LOG"])

    def start_run(self, name: str) -> PartitionJobWatch:
        for p in range(PARTITIONS):
            self.s3.put_object(self.bucket, f"in-{name}/{p:03d}", io.BytesIO(b"x"), 1)
        jobs = PartitionJobWatch(self.ns, name)
        create(self.custom, self.ns, run_body(name, self.endpoint, self.bucket))
        wait_for(lambda: jobs.unfinished and len(jobs.seen) >= 5, 120, f"{name} to be under way", interval=0.1)
        return jobs

    def finish(self, name: str, jobs: PartitionJobWatch) -> dict[str, Any]:
        status = wait_phase(self.custom, self.ns, name, {"Succeeded", "Failed"}, 300)["status"]
        final = status["phase"]
        if final != "Succeeded":
            print(f"{name} failed: {status.get('conditions')}", flush=True)
        jobs.stop()
        return {
            "phase": final,
            "partition_jobs": len(jobs.seen),
            "most_unfinished": jobs.most_unfinished,
        }

    def first_write_after(self, moment: float, replica: str) -> float:
        """Seconds from ``moment`` (epoch) to the apiserver's receipt of ``replica``'s next write."""
        since = dt.datetime.fromtimestamp(moment, dt.UTC)

        def first() -> float | None:
            return next((at for at, who in operator_writes_by_replica(self.audit, since) if who == replica), None)

        return wait_for(first, 60, f"the first write of {replica}", interval=0.5) - moment

    def process_round(self, stop: signal.Signals, index: int) -> dict[str, Any]:
        name = f"{stop.name.lower()}-{index}"
        env = {
            "PARAFLOW_LEASE_NAME": f"bench-{name}-{uuid.uuid4().hex[:4]}",
            "PARAFLOW_LEASE_NAMESPACE": LEASE_NAMESPACE,
        }
        leases = LeaseWatch(LEASE_NAMESPACE, env["PARAFLOW_LEASE_NAME"])
        leader = OperatorProcess(env, verbose=False).start()
        leader.wait_started()
        wait_for(lambda: leases.writes and leases.writes[-1][1] == leader.identity, 30, "the first leader")
        standby = OperatorProcess(env, verbose=False).start()
        standby.wait_started()
        try:
            jobs = self.start_run(name)
            stopped = time.time()
            leader.kill(stop)
            taken = wait_for(
                lambda: next((at for at, who in leases.writes if who == standby.identity), None), 60, "a takeover"
            )
            row = {
                "stop": stop.name,
                "takeover_s": round(taken - stopped, 2),
                "first_write_s": round(self.first_write_after(stopped, standby.identity), 2),
                **self.finish(name, jobs),
                "conflicts": sum(p.log.read_text().count("already exists (409)") for p in (leader, standby)),
            }
        finally:
            leases.stop()
            standby.stop()
            client.CoordinationV1Api().delete_namespaced_lease(env["PARAFLOW_LEASE_NAME"], LEASE_NAMESPACE)
        print(row, flush=True)
        return row

    def helm_round(self) -> dict[str, Any]:
        helm, rel, relns = "helm", "bench", f"bench-helm-{uuid.uuid4().hex[:4]}"
        common = ["-n", relns, "--wait", "--timeout", "180s"]
        watched = ["--set", "watch.clusterWide=false", "--set", f"watch.namespaces={{{self.ns}}}"]
        subprocess.run([helm, "install", rel, str(CHART), "--create-namespace", *common, *watched], check=True)
        leases = LeaseWatch(relns, "bench-paraflow")
        try:
            jobs = self.start_run("helm")
            subprocess.run(
                [helm, "upgrade", rel, str(CHART), "--reuse-values", "--set", "settings.resyncSeconds=7", *common],
                check=True,
            )
            # `--wait` returns once the old pods are gone, maybe before the new leader's first try.
            handovers = wait_for(leases.handovers, 60, "a new leader after the upgrade")
            slowest = max(handovers, key=lambda h: h.gap_seconds)
            row = {
                "stop": f"helm upgrade (rolling, {len(handovers)} hand-over(s), all released: "
                f"{all(h.released for h in handovers)})",
                "takeover_s": round(slowest.gap_seconds, 2),
                "first_write_s": round(self.first_write_after(slowest.at, slowest.new), 2),
                **self.finish("helm", jobs),
            }
        finally:
            leases.stop()
            subprocess.run([helm, "uninstall", rel, "-n", relns, "--wait"], check=False)
            self.core.delete_namespace(relns)
        print(row, flush=True)
        return row

    def close(self) -> None:
        self.core.delete_namespace(self.ns)


def table(doc: dict[str, Any]) -> str:
    lines = [
        "| stop | takeover s | first write s | phase | partition Jobs | most unfinished (max 3) | 409s |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['stop']} | {r['takeover_s']} | {r.get('first_write_s', '')} | {r['phase']} | "
            f"{r['partition_jobs']} | {r['most_unfinished']} | {r.get('conflicts', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="SIGKILL rounds, and as many SIGTERM rounds")
    parser.add_argument("--helm-rounds", type=int, default=1)
    args = parser.parse_args()
    bench = Bench()
    rows = []
    try:
        for i in range(args.rounds):
            rows.append(bench.process_round(signal.SIGKILL, i))
            rows.append(bench.process_round(signal.SIGTERM, i))
        rows += [bench.helm_round() for _ in range(args.helm_rounds)]
    finally:
        bench.close()
    doc = {"machine": machine(), "versions": cluster_versions(), "rows": rows}
    write_results("failover", doc, table(doc))
    print(table(doc))


if __name__ == "__main__":
    main()
