"""Argo Workflows, the peer a user would pick instead: its workflow-controller (built by
``hack/build.sh argo`` from the Go module proxy, run outside the cluster as a local process)
running one Workflow whose step fans out over N items with ``parallelism`` = maxConcurrency.

Benchmark only: Argo is never part of paraflow. Its pods land on KWOK nodes, where the local
cluster's pod-complete stage (``hack/kwok/pod-complete.yaml``) completes Workflow-owned pods as
it does Job-owned ones. No executor runs there, so Argo's per-pod task-result writes (one
create and one patch per pod from its ``wait`` container) are not made: its figures here are a
lower bound of what it costs on real nodes. The template declares no outputs: a node with
outputs would wait for a task result that never comes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.common import proc_stats
from bench.orchestration.kwok import KWOK, pod_metadata

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"
METRICS_PORT = 19090
# A run still going after this is recorded as not completed (with its phase), not waited for.
DEADLINE_SECONDS = 2400
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def version() -> str:
    """The pinned Argo version (hack/versions.env)."""
    for line in (REPO / "hack/versions.env").read_text().splitlines():
        if line.startswith("ARGO_VERSION="):
            return line.split("=", 1)[1].split()[0]
    raise RuntimeError("ARGO_VERSION is not in hack/versions.env")


def build() -> tuple[Path, Path]:
    """The controller binary and the module's minimal CRDs, built or found in the cache."""
    subprocess.run(["bash", str(REPO / "hack/build.sh"), "argo"], check=True)
    cache = Path(os.environ.get("PARAFLOW_CACHE", Path.home() / ".cache/paraflow"))
    binary = cache / f"bin/argo-{version()}/workflow-controller"
    module = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/argoproj/argo-workflows/v4@{version()}"],
        check=True,
        capture_output=True,
        text=True,
        cwd="/tmp",
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "GOPROXY": "https://proxy.golang.org"},
    )
    return binary, Path(json.loads(module.stdout)["Dir"]) / "manifests/base/crds/minimal"


def install_crds(crds: Path) -> None:
    subprocess.run(["kubectl", "apply", "--server-side", "-k", str(crds)], check=True, capture_output=True)


def workflow(name: str, partitions: int, concurrency: int, task_seconds: float) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": "task",
        "metadata": pod_metadata(task_seconds),
        "container": {"image": "fake:1", "command": ["/bin/true"]},
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "fan-out",
            "parallelism": concurrency,
            **KWOK,
            "templates": [
                # A command: Argo's executor refuses an image whose entrypoint it cannot look up.
                # withSequence is Argo's compact loop (withItems with the numbers 0..N-1 written out).
                {
                    "name": "fan-out",
                    "steps": [[{"name": "item", "template": "task", "withSequence": {"count": str(partitions)}}]],
                },
                task,
            ],
        },
    }


def _writes() -> float:
    """Writes the controller sent, from its own request counter (as paraflow's is read)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if "k8s_request_total{" in line and not line.startswith("#"):
            labels = line[line.index("{") + 1 : line.rindex("}")]
            verb = next((x.split("=", 1)[1].strip('"') for x in labels.split(",") if x.startswith("verb=")), "")
            if verb.lower() in WRITE_VERBS:
                total += float(line.rsplit(" ", 1)[1])
    return total


def run(
    binary: Path,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    ns: str,
    partitions: int,
    concurrency: int,
    task_seconds: float,
    requeue: str,
) -> dict[str, Any]:
    """One fan-out of ``partitions`` items with a fresh controller watching ``ns`` only."""
    config = {"metricsConfig": f"enabled: true\nsecure: false\nport: {METRICS_PORT}\npath: /metrics\n"}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "workflow-controller-configmap"}, "data": config})
    log = open(f"/tmp/argo-controller-{ns}.log", "w")  # noqa: SIM115 - closed with the process
    # The same client rate as paraflow's benchmark operator (500 writes/s): Argo's default of
    # 20 QPS would measure its throttle, not its orchestration.
    proc = subprocess.Popen(
        [
            str(binary),
            "--kubeconfig",
            os.environ["KUBECONFIG"],
            "--namespace",
            ns,
            "--namespaced",
            "--managed-namespace",
            ns,
            "--executor-image",
            "fake:1",
            "--loglevel",
            "warn",
            "--qps",
            "500",
            "--burst",
            "500",
        ],
        # DEFAULT_REQUEUE_TIME: how often one workflow may be reconciled (Argo's default 10 s; its
        # authors call 1 s the least that keeps informers current, and 2 s a choice for short nodes).
        env={**os.environ, "LEADER_ELECTION_DISABLE": "true", "DEFAULT_REQUEUE_TIME": requeue},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    name = f"argo-{partitions}-{concurrency}"
    try:
        _wait_metrics(proc)
        started = time.monotonic()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, workflow(name, partitions, concurrency, task_seconds)
        )
        deadline = started + DEADLINE_SECONDS
        while True:
            status = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status") or {}
            phase = status.get("phase", "")
            if phase in ("Succeeded", "Failed", "Error") or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.25)
        makespan = time.monotonic() - started
        if phase not in ("Succeeded", "Failed", "Error"):
            phase = f"still {phase or 'Pending'} after {makespan:.0f} s (stopped)"
        rss, cpu = proc_stats(proc.pid) if proc.poll() is None else (0.0, 0.0)
        writes = _writes() if proc.poll() is None else 0.0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {
        "completed": phase == "Succeeded",
        "phase": phase,
        "message": (status.get("message") or "")[:300],
        "makespan_s": round(makespan, 1),
        "writes_per_item": round(writes / partitions, 3),
        "controller_peak_rss_mib": round(rss, 1),
        "controller_cpu_s": round(cpu, 1),
        "requeue": requeue,
    }


def _wait_metrics(proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"workflow-controller exited with {proc.returncode}: see /tmp/argo-controller-*.log")
        try:
            _writes()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("workflow-controller served no metrics within 60 s")
