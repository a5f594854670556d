"""Running the Helm chart and the command-line tools it is used with, as a user does."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kubernetes import client

CHART = Path(__file__).resolve().parents[2] / "charts" / "paraflow"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f'{name} is not on PATH: eval "$(hack/cluster.sh env)" puts the built one there')
    return path


def run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@contextmanager
def installed(release: str, release_namespace: str, watched_namespace: str, core: client.CoreV1Api) -> Iterator[None]:
    """The chart installed and ready, watching one namespace; uninstalled (and its namespace gone) after."""
    helm = tool("helm")
    try:
        run(
            helm,
            "install",
            release,
            str(CHART),
            "-n",
            release_namespace,
            "--create-namespace",
            "--wait",
            "--timeout",
            "180s",
            "--set",
            "watch.clusterWide=false",
            "--set",
            f"watch.namespaces={{{watched_namespace}}}",
        )
        yield
    finally:
        subprocess.run([helm, "uninstall", release, "-n", release_namespace], capture_output=True)
        core.delete_namespace(release_namespace)
