"""Runs the real operator (``paraflow operator``) as a subprocess against the test cluster."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from tests.support import namespace_prefix

# Fast passes for tests; the defaults favour a busy production control plane.
TEST_SETTINGS = {
    "PARAFLOW_RESYNC_SECONDS": "5",
    "PARAFLOW_DEBOUNCE_SECONDS": "0.2",
    "PARAFLOW_ERROR_BACKOFF_SECONDS": "0.5",
    "PARAFLOW_ERROR_BACKOFF_MAX_SECONDS": "5",
    "PARAFLOW_WORKER_IMAGE": "paraflow/worker:0.1.0",
    # Small: a succeededJobs: Delete test of a few partitions deletes while the run goes on.
    "PARAFLOW_SUCCEEDED_JOBS_KEPT_WHILE_RUNNING": "4",
    # A blocked pod is asked about after 2 s, not 8: the PodsBlocked tests wait no longer than that.
    "PARAFLOW_STALL_SECONDS": "2",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def worker_scope() -> tuple[list[str], dict[str, str]]:
    """Under pytest-xdist: the operator's namespace pattern and its own Lease, so each worker's
    operator leads at once and acts only on its worker's workflows. Otherwise: all namespaces."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return [], {}
    return ["--namespace", f"{namespace_prefix()}*"], {"PARAFLOW_LEASE_NAME": f"paraflow-operator-{worker}"}


class OperatorProcess:
    def __init__(self, extra_env: dict[str, str] | None = None, verbose: bool = True) -> None:
        self.verbose = verbose
        self.scope, scope_env = worker_scope()
        self.log = Path(tempfile.mkstemp(prefix="paraflow-operator-", suffix=".log")[1])
        # One identity for the life of this object: restarted after a SIGKILL, it takes back its
        # own Lease at once, as a restarted container of the same pod does, instead of waiting
        # out a lease its dead predecessor held.
        self.identity = f"test-operator-{uuid.uuid4().hex[:8]}"
        # Ports of its own: the Helm-installed operator of the chart tests serves 9090 on this host.
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            **TEST_SETTINGS,
            **scope_env,
            "PARAFLOW_IDENTITY": self.identity,
            "PARAFLOW_METRICS_PORT": str(self.metrics_port),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"

    def start(self) -> OperatorProcess:
        exe = Path(sys.executable).with_name("paraflow")
        verbose = ["--verbose"] if self.verbose else []
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(exe), "operator", *self.scope, *verbose, "--liveness", self.liveness],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_started(self, timeout: float = 60) -> None:
        """Until kopf's liveness endpoint answers: the operator is up and its probes run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"operator exited:\n{self.tail()}"
            try:
                with urllib.request.urlopen(self.liveness, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"operator did not start:\n{self.tail()}")
