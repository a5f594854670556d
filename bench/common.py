"""Shared by the benchmarks: run a command measuring wall time and its peak RSS; machine facts."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, combined output) of one command.

    Peak RSS comes from GNU time's %M for the command itself: the rusage of a child forked from
    this (large) benchmark process would count the parent's pages it held before exec.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-q", "-f", "%M", "-o", rss_file.name, *cmd],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        seconds = time.perf_counter() - started
        out = done.stdout.decode(errors="replace")
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({done.returncode}):\n{out[-3000:]}")
        peak_kib = int(rss_file.read().strip().splitlines()[-1])
    return seconds, peak_kib / 1024, out


def proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS MiB, CPU seconds) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return peak, cpu


def machine() -> dict[str, Any]:
    mem = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0"
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def write_results(name: str, doc: dict[str, Any], table: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table)


def cluster_versions(**extra: str) -> dict[str, str]:
    """paraflow's and the cluster's versions (the kubeconfig's), for a result document."""
    from kubernetes import client  # only the cluster benchmarks need it

    return {"paraflow": "0.1.0", "kubernetes": client.VersionApi().get_code().git_version, **extra}
