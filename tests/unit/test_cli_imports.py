"""The CLI imports what a command needs when the command runs, not before: importing it and
``paraflow --help`` load no Kubernetes client, no MinIO or obstore, no kopf and none of paraflow's
pydantic models; ``set-concurrency`` loads the Kubernetes client and still none of the others.

Each case runs in a fresh interpreter (this one has imported everything already) and reads its
``sys.modules`` at the end. How long a command takes is bench/cli's to measure, not a test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import paraflow
import paraflow_worker

pytestmark = pytest.mark.unit

# What no command needs before it runs: the clients, the operator's framework, and the models
# (pydantic, and the worker's contract they import).
HEAVY = ("kubernetes", "minio", "obstore", "kopf", "paraflow.models", "paraflow_worker")

# The Kubernetes client with its calls faked: set-concurrency runs to the end with no cluster.
FAKE_CLUSTER = """
from kubernetes import client, config

class Response:
    data = b"{}"

def patch(self, *args, **kwargs):
    print(json.dumps(args))
    return Response()

config.load_incluster_config = lambda: None
client.CustomObjectsApi.patch_namespaced_custom_object = patch
"""


def run_cli(tmp_path: Path, *argv: str, setup: str = "") -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``paraflow *argv`` (after ``setup``; no argv: only ``import paraflow.cli``) in a fresh
    interpreter on this one's sources: what it printed, and every module it had imported."""
    listing = tmp_path / "modules.json"
    run = f"sys.argv = ['paraflow', *{list(argv)!r}]\nparaflow.cli.main()" if argv else ""
    script = f"""
import atexit, json, pathlib, sys
atexit.register(lambda: pathlib.Path({str(listing)!r}).write_text(json.dumps(sorted(sys.modules))))
{setup}
import paraflow.cli
{run}
"""
    sources = [str(Path(paraflow.__file__).parents[1]), str(Path(paraflow_worker.__file__).parents[1])]
    path = os.pathsep.join([*sources, os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True
    )
    return done, set(json.loads(listing.read_text()))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY))


def test_importing_the_cli_imports_no_client_kopf_or_models(tmp_path: Path) -> None:
    done, modules = run_cli(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "paraflow.cli.app" in modules
    assert heavy_in(modules) == []


def test_help_runs_without_importing_any_client_kopf_or_models(tmp_path: Path) -> None:
    done, modules = run_cli(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert "set-concurrency" in done.stdout
    assert heavy_in(modules) == []


def test_the_help_of_set_concurrency_runs_without_importing_any_client_kopf_or_models(tmp_path: Path) -> None:
    done, modules = run_cli(tmp_path, "set-concurrency", "--help")
    assert done.returncode == 0, done.stderr
    assert "maxConcurrency" in done.stdout
    assert heavy_in(modules) == []


def test_set_concurrency_imports_the_kubernetes_client_and_no_storage_client_kopf_or_models(tmp_path: Path) -> None:
    done, modules = run_cli(tmp_path, "set-concurrency", "wf", "7", "-n", "ns", setup=FAKE_CLUSTER)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        "paraflow.dev",
        "v1alpha1",
        "ns",
        "parallelworkflows",
        "wf",
        {"spec": {"maxConcurrency": 7}},
    ]
    assert "ns/wf: maxConcurrency 7" in done.stderr
    assert "kubernetes.client" in modules
    assert [m for m in heavy_in(modules) if not m.startswith("kubernetes")] == []
