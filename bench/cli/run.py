"""How long the ``paraflow`` CLI takes to start, and to run a command that makes one API call.

    .venv/bin/python -m bench.cli.run [--runs 20] [--baseline a291f72] [--no-bytecode]

No cluster: each command runs as a user runs it (the ``paraflow`` console script beside this
Python, ``PYTHONPATH`` on this checkout's sources, so the code measured is this checkout's
whichever tree the virtualenv was installed from):
- ``paraflow --help``;
- ``paraflow set-concurrency --help``;
- the imports ``set-concurrency`` needs: the CLI, then the Kubernetes client's config loader and
  CustomObjectsApi (``python -c``; no call made);
- ``paraflow set-concurrency wf 7 -n bench`` against a stub apiserver served from this process
  (a kubeconfig pointing at it; it answers the PATCH and counts them, so a run that did not patch
  is an error), which is the whole command as it runs against a cluster, minus the cluster's time;
- ``python -c pass``: the interpreter's own start, the floor under every row.
Timed with hyperfine when it is installed (``apt-get install hyperfine``; one command after the
other), else (or with ``--no-hyperfine``) by running every command once a round, round after
round, so load that comes and goes is shared; each row keeps the median and lists every run.
With ``--baseline REF`` the same commands also run on REF's sources (``git archive`` into a
temporary directory), in the same run: a before and after on the same machine. The load average
before and after the run is recorded (a build beside the benchmark shows there).
With ``--no-bytecode`` every command also runs with no bytecode to read or write
(``PYTHONDONTWRITEBYTECODE=1`` and an empty ``PYTHONPYCACHEPREFIX``), as in the operator image,
which removes every ``__pycache__`` and sets ``PYTHONDONTWRITEBYTECODE``: each run compiles every
module it imports.
Targets (the issue's): ``--help`` under 0.5 s, ``set-concurrency`` under 1 s.
Results: bench/results/cli-<date>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import machine, write_results

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "paraflow.dev", "v1alpha1", "parallelworkflows"  # paraflow.constants
PATCH_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/bench/{PLURAL}/wf"
HELP_TARGET_S, COMMAND_TARGET_S = 0.5, 1.0
IMPORTS = "import paraflow.cli; from kubernetes import client, config; client.CustomObjectsApi"
PATCHING = "paraflow set-concurrency (stub apiserver)"


class Apiserver(BaseHTTPRequestHandler):
    """Answers ``PATCH`` of the one workflow the benchmark names, as the apiserver would (200, the object)."""

    patches: list[dict[str, Any]] = []

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.split("?")[0] != PATCH_PATH:
            self.send_error(404, f"not the benchmark's workflow: {self.path}")
            return
        self.patches.append(body)
        reply = json.dumps(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ParallelWorkflow",
                "metadata": {"name": "wf", "namespace": "bench"},
                "spec": body.get("spec", {}),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def kubeconfig(directory: Path, port: int) -> Path:
    path = directory / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "stub", "user": {"token": "bench"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                "current-context": "stub",
            }
        )
    )
    return path


def sources_of(ref: str, directory: Path) -> Path:
    """REF's operator/ and worker/ (``git archive``), unpacked under ``directory``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "operator", "worker"], check=True, capture_output=True
    ).stdout
    target = directory / "baseline"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def commands(python: Path) -> list[tuple[str, list[str], float | None]]:
    """(name, argv, target seconds) of each row."""
    paraflow = str(python.with_name("paraflow"))
    return [
        ("paraflow --help", [paraflow, "--help"], HELP_TARGET_S),
        ("paraflow set-concurrency --help", [paraflow, "set-concurrency", "--help"], COMMAND_TARGET_S),
        ("imports of set-concurrency", [str(python), "-c", IMPORTS], COMMAND_TARGET_S),
        (PATCHING, [paraflow, "set-concurrency", "wf", "7", "-n", "bench"], COMMAND_TARGET_S),
        ("python -c pass", [str(python), "-c", "pass"], None),
    ]


def env_for(sources: Path, kubeconfig_path: Path, no_bytecode: Path | None) -> dict[str, str]:
    """The commands' environment; ``no_bytecode``: an empty directory, to run with no bytecode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_SERVICE_", "PYTHONPYCACHE"))}
    env["PYTHONPATH"] = f"{sources / 'operator'}{os.pathsep}{sources / 'worker'}"
    env["KUBECONFIG"] = str(kubeconfig_path)
    if no_bytecode is not None:
        env |= {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(no_bytecode)}
    return env


def time_hyperfine(cases: list[tuple[list[str], dict[str, str]]], runs: int, warmup: int) -> list[list[float]]:
    """Seconds of every run of each case: hyperfine (no shell) runs one case after another."""
    times = []
    for argv, env in cases:
        with tempfile.NamedTemporaryFile(suffix=".json") as export:
            subprocess.run(
                [
                    "hyperfine",
                    "-N",
                    "--style",
                    "basic",
                    "--warmup",
                    str(warmup),
                    "--runs",
                    str(runs),
                    "--export-json",
                    export.name,
                    shlex.join(argv),
                ],
                env=env,
                check=True,
            )
            times.append(json.loads(Path(export.name).read_text())["results"][0]["times"])
    return times


def time_rounds(cases: list[tuple[list[str], dict[str, str]]], runs: int, warmup: int) -> list[list[float]]:
    """Seconds of every run of each case: each round runs every case once, so load that comes and
    goes is shared by all of them."""
    times: list[list[float]] = [[] for _ in cases]
    for round_ in range(warmup + runs):
        for i, (argv, env) in enumerate(cases):
            started = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if round_ >= warmup:
                times[i].append(time.perf_counter() - started)
    return times


def git_commit() -> str:
    described = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
    )
    return described.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each command (after 3 warm-up runs)")
    parser.add_argument("--baseline", metavar="REF", help="also time REF's sources, for a before and after")
    parser.add_argument("--no-bytecode", action="store_true", help="also time every command with no bytecode")
    parser.add_argument(
        "--no-hyperfine", action="store_true", help="time with subprocess rounds even if it is installed"
    )
    args = parser.parse_args()
    warmup = 3
    hyperfine = None if args.no_hyperfine else shutil.which("hyperfine")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Apiserver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        config = kubeconfig(Path(tmp), server.server_address[1])
        trees = [("this checkout", git_commit(), ROOT)]
        if args.baseline:
            trees.insert(0, ("baseline", args.baseline, sources_of(args.baseline, Path(tmp))))
        no_bytecode = Path(tmp) / "no-bytecode"
        no_bytecode.mkdir()
        python = Path(sys.executable)
        cases, rows = [], []
        for bytecode in [True, False] if args.no_bytecode else [True]:
            for label, code, sources in trees:
                env = env_for(sources, config, None if bytecode else no_bytecode)
                for name, argv, target in commands(python):
                    cases.append((argv, env))
                    row = {"command": name, "code": f"{label} ({code})", "bytecode": bytecode, "target_s": target}
                    rows.append(row)
        loadavg_before = os.getloadavg()
        if hyperfine:
            timer = subprocess.run([hyperfine, "--version"], capture_output=True, text=True).stdout.strip()
            times = time_hyperfine(cases, args.runs, warmup)
        else:
            timer = "subprocess, each command in turn, round after round"
            times = time_rounds(cases, args.runs, warmup)
        loadavg_after = os.getloadavg()
    server.shutdown()

    patched = sum(row["command"] == PATCHING for row in rows) * (warmup + args.runs)
    if len(Apiserver.patches) != patched or any(p != {"spec": {"maxConcurrency": 7}} for p in Apiserver.patches):
        raise RuntimeError(
            f"the stub apiserver expected {patched} patches of maxConcurrency 7: {Apiserver.patches[:3]}"
        )
    for row, seconds in zip(rows, times, strict=True):
        median = statistics.median(seconds)
        row |= {
            "median_s": round(median, 3),
            "min_s": round(min(seconds), 3),
            "max_s": round(max(seconds), 3),
            "runs_s": [round(s, 3) for s in seconds],
        }
        if row["target_s"] is not None:
            row["meets_target"] = median < row["target_s"]
        print(f"{row['command']:<45} {row['code']:<30} bytecode {row['bytecode']!s:<5} median {median:.3f} s")
    doc = {
        "machine": machine() | {"loadavg_before": loadavg_before, "loadavg_after": loadavg_after},
        "timer": timer,
        "runs": args.runs,
        "warmup_runs": warmup,
        "rows": rows,
    }
    write_results(f"cli-{dt.date.today().isoformat()}", doc, table(doc))
    print(table(doc))


def table(doc: dict[str, Any]) -> str:
    host = doc["machine"]
    lines = [
        f"Timer: {doc['timer']}; median of {doc['runs']} runs after {doc['warmup_runs']} warm-up runs; "
        f"load average {host['loadavg_before'][0]:.1f} before, {host['loadavg_after'][0]:.1f} after "
        f"on {host['cpus']} cores.",
        "",
        "| command | code | bytecode | median s | min s | max s | target s | meets |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in doc["rows"]:
        target = "" if r["target_s"] is None else r["target_s"]
        meets = "" if r["target_s"] is None else ("yes" if r["meets_target"] else "no")
        bytecode = "yes" if r["bytecode"] else "none"
        lines.append(
            f"| {r['command']} | {r['code']} | {bytecode} | {r['median_s']} | {r['min_s']} | {r['max_s']} | "
            f"{target} | {meets} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
