"""Replication benchmark: paraflow's engine against `mc mirror` and `rclone sync`, on the local
cluster's two MinIO servers, in one run.

    hack/cluster.sh up && eval "$(hack/cluster.sh env)" && .venv/bin/python -m bench.replication.run

Data sets: 10,000 x 4 KiB, 20,000 x 8 KiB, 20 x 64 MiB and 8 x 256 MiB; topologies: same-server
(bucket to bucket on one MinIO) and cross-server (MinIO to the other MinIO). Every tool copies
the same source objects into an empty destination; afterwards every replica is read back and
hashed against its source (``mismatches``). Each row also has the CPU seconds of the tool and of
each MinIO server while it ran (where the time goes), and the ratio to the faster peer with the
target for its row. Results: bench/results/replication.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from minio import Minio

from bench.common import RESULTS, machine, measure, write_results
from bench.replication.limit import describe, run_limit, sweep
from paraflow_worker import contract
from paraflow_worker.contract import (
    ManifestPartition,
    OutputObject,
    ReplicationTarget,
    ReplicationTask,
    ResultManifest,
    ShardResult,
)
from paraflow_worker.storage import make_client, put_json

ROOT = Path(__file__).resolve().parents[2]
RUN = "run/"
OUT = "out/"
RUN_UID = "bench"
PER_PARTITION = 100
KiB, MiB = 1024, 1024**2
DATA_SETS = ((10_000, 4 * KiB), (20_000, 8 * KiB), (20, 64 * MiB), (8, 256 * MiB))
# Issue #17's targets, against the faster of mc and rclone on the same row.
SMALL_TARGET = {"same-server": 2.0, "cross-server": 1.5}  # objects/s
LARGE_TARGET = 1.0  # MB/s
RSS_TARGET_MIB = 200
TOOLS = ("paraflow", "mc", "rclone", "limit")
# Below this share of the limit, a row needs the profile that explains it (issue #33).
LIMIT_SHARE = 0.9


def minio_cpu_seconds() -> list[float]:
    """CPU seconds so far of each local MinIO server (both on this host), in endpoint order."""
    found = subprocess.run(["pgrep", "-af", "minio server"], capture_output=True, text=True).stdout.splitlines()
    tick = os.sysconf("SC_CLK_TCK")
    seconds = []
    for line in sorted(found, key=lambda x: x.split("--address", 1)[-1]):
        fields = Path(f"/proc/{line.split()[0]}/stat").read_text().rsplit(")", 1)[1].split()
        seconds.append((int(fields[11]) + int(fields[12])) / tick)
    return seconds


def quiesce(limit: float = 90.0) -> None:
    """Waits until both MinIO servers are idle (under 5 % of a core for a second): the deletes of
    the previous row's buckets finish in the background, and would otherwise bill the next tool."""
    deadline = time.monotonic() + limit
    before = sum(minio_cpu_seconds())
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = sum(minio_cpu_seconds())
        if now - before < 0.05:
            return
        before = now


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def env_or_die(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f'{name} is not set: hack/cluster.sh up && eval "$(hack/cluster.sh env)"')
    return value


def fresh_bucket(client: Minio, stem: str) -> str:
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    client.make_bucket(name)
    return name


def drop_bucket(client: Minio, bucket: str) -> None:
    names = [o.object_name or "" for o in client.list_objects(bucket, recursive=True)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda n: client.remove_object(bucket, n), names))
    client.remove_bucket(bucket)


def make_source(client: Minio, count: int, size: int) -> tuple[str, dict[str, str]]:
    """A source bucket laid out like a finished run: outputs, shard results and a manifest."""
    bucket = fresh_bucket(client, "bench-src")
    digests: dict[str, str] = {}

    def one(i: int) -> OutputObject:
        data = os.urandom(size)
        p = i // PER_PARTITION
        key = f"{contract.attempt_output_prefix(OUT, RUN_UID, p, attempt=1)}obj-{i:06d}"
        client.put_object(bucket, key, io.BytesIO(data), size, content_type="application/octet-stream")
        digest = hashlib.sha256(data).hexdigest()
        digests[key] = digest
        return OutputObject(key=key, size=size, sha256=digest)

    with ThreadPoolExecutor(16 if size < MiB else 2) as pool:
        objects = list(pool.map(one, range(count)))
    partitions = -(-count // PER_PARTITION)
    for p in range(partitions):
        outs = objects[p * PER_PARTITION : (p + 1) * PER_PARTITION]
        put_json(
            client,
            bucket,
            contract.shard_result_key(RUN, p, 1, shard=0),
            doc=ShardResult(
                partition=p,
                attempt=1,
                shard=0,
                outputs=outs,
                output_prefix=contract.attempt_output_prefix(OUT, RUN_UID, p, attempt=1),
            ),
        )
    manifest = ResultManifest(
        workflow="bench",
        uid=RUN_UID,
        bucket=bucket,
        failed=[],
        succeeded=[
            ManifestPartition(index=p, attempt=1, results_prefix=contract.results_prefix(RUN, p, 1))
            for p in range(partitions)
        ],
    )
    put_json(client, bucket, contract.manifest_key(RUN), doc=manifest)
    return bucket, digests


def mismatches(client: Minio, bucket: str, expected: dict[str, str], rename: Any) -> int:
    """Replicas missing or whose content hashes differ from their source."""

    def check(item: tuple[str, str]) -> int:
        key, digest = item
        try:
            response = client.get_object(bucket, rename(key))
        except Exception:
            return 1
        try:
            hashed = hashlib.sha256()
            for chunk in response.stream(MiB):
                hashed.update(chunk)
            return int(hashed.hexdigest() != digest)
        finally:
            response.close()
            response.release_conn()

    with ThreadPoolExecutor(32) as pool:
        return sum(pool.map(check, expected.items()))


def run_paraflow(
    src_ep: str, src_bucket: str, dst_ep: str, dst_bucket: str, same: bool, creds: tuple[str, str]
) -> tuple[float, float]:
    """As a replication Job runs it, with the workflow's defaults (concurrency 32, verify checksum)."""
    task = ReplicationTask(
        label="bench",
        output_prefix=OUT,
        partitions=None,
        verify="checksum",
        targets=[ReplicationTarget(name="dst", bucket=dst_bucket, prefix=OUT, endpoint=dst_ep, server_side=same)],
    )
    access, secret = contract.destination_credential_env(0)
    env = {
        **os.environ,
        contract.Env.S3_ENDPOINT: src_ep,
        contract.Env.S3_ACCESS_KEY: creds[0],
        contract.Env.S3_SECRET_KEY: creds[1],
        contract.Env.RUN_BUCKET: src_bucket,
        contract.Env.RUN_PREFIX: RUN,
        contract.Env.REPLICATION: task.model_dump_json(),
        **contract.REPLICATION_POD_ENV,  # as its Job runs it
        access: creds[0],
        secret: creds[1],
    }
    seconds, rss, out = measure([str(Path(sys.executable).with_name("paraflow-worker")), "replicate"], env)
    print(out.strip().splitlines()[-1])
    return seconds, rss


def run_mc(
    mc: str, src_ep: str, src_bucket: str, dst_ep: str, dst_bucket: str, creds: tuple[str, str], config_dir: str
) -> tuple[float, float]:
    base = [mc, "--config-dir", config_dir, "--quiet"]
    subprocess.run([*base, "alias", "set", "src", src_ep, *creds], check=True, capture_output=True)
    subprocess.run([*base, "alias", "set", "dst", dst_ep, *creds], check=True, capture_output=True)
    # Same server: one alias on both sides, the only way mc copies server-side.
    target_alias = "src" if src_ep == dst_ep else "dst"
    seconds, rss, _ = measure(
        [*base, "mirror", "--overwrite", f"src/{src_bucket}/{OUT}", f"{target_alias}/{dst_bucket}/{OUT}"]
    )
    return seconds, rss


def run_rclone(
    src_ep: str, src_bucket: str, dst_ep: str, dst_bucket: str, creds: tuple[str, str], transfers: int
) -> tuple[float, float]:
    # rclone 1.60 refuses a custom CA bundle on its HTTP transport, even for plain http.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    for name, ep in (("SRC", src_ep), ("DST", dst_ep)):
        env.update(
            {
                f"RCLONE_CONFIG_{name}_TYPE": "s3",
                f"RCLONE_CONFIG_{name}_PROVIDER": "Minio",
                f"RCLONE_CONFIG_{name}_ENDPOINT": ep,
                f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": creds[0],
                f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": creds[1],
            }
        )
    target = "src" if src_ep == dst_ep else "dst"  # same remote: server-side copy
    seconds, rss, _ = measure(
        [
            "rclone",
            "sync",
            f"src:{src_bucket}/{OUT}",
            f"{target}:{dst_bucket}/{OUT}",
            "--transfers",
            str(transfers),
            "--checkers",
            str(transfers),
            "--s3-no-check-bucket",
        ],
        env,
    )
    return seconds, rss


def versions(mc: str) -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True)
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"

    import minio
    import obstore

    return {
        "paraflow": "0.1.0",
        "minio-py": minio.__version__,
        "obstore": obstore.__version__,
        "mc": first_line([mc, "--version"]),
        "rclone": first_line(["rclone", "version"]),
        "minio-server": os.environ.get("PARAFLOW_MINIO_VERSION", ""),
    }


def judge(rows: list[dict[str, Any]]) -> None:
    """Adds to each tool's row its ratio to the limit on the same data and topology, and to a
    paraflow row its ratio to the faster peer, the target for that row, and whether the row meets
    it (RSS included)."""

    def alike(row: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of every tool on the same data and topology."""
        key = (row["objects"], row["object_bytes"], row["topology"])
        return [r for r in rows if (r["objects"], r["object_bytes"], r["topology"]) == key]

    for row in rows:
        if row["tool"] == "limit":
            continue
        metric = "objects_per_s" if row["object_bytes"] < MiB else "mb_per_s"
        limit = [r for r in alike(row) if r["tool"] == "limit"]
        if limit:
            row["vs_limit"] = round(row[metric] / limit[0][metric], 2)
        if row["tool"] != "paraflow":
            continue
        peers = [r[metric] for r in alike(row) if r["tool"] in ("mc", "rclone")]
        target = SMALL_TARGET[row["topology"]] if metric == "objects_per_s" else LARGE_TARGET
        row["vs_faster_peer"] = round(row[metric] / max(peers), 2)
        row["target"] = target
        row["meets_target"] = row["vs_faster_peer"] >= target and row["peak_rss_mib"] <= RSS_TARGET_MIB


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tool | objects | object size | topology | objects/s | MB/s | peak RSS MiB | tool CPU s | MinIO CPU s "
        "(source, target) | mismatches | vs limit | vs faster peer (target) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        size = f"{r['object_bytes'] // KiB} KiB" if r["object_bytes"] < MiB else f"{r['object_bytes'] // MiB} MiB"
        verdict = ""
        if "vs_faster_peer" in r:
            verdict = f"{r['vs_faster_peer']:.2f}x ({r['target']:.1f}x) {'met' if r['meets_target'] else 'missed'}"
        # A limit row merged from a run before the PUT-whole sweep names only its concurrency.
        setting = str(r.get("setting", r.get("concurrency")))
        tool = f"limit ({describe(setting)})" if r["tool"] == "limit" else r["tool"]
        share = ""
        if "vs_limit" in r:
            share = f"{r['vs_limit']:.2f}x" + (" (below 0.9x)" if r["vs_limit"] < LIMIT_SHARE else "")
        bad = "-" if r["mismatches"] is None else r["mismatches"]
        lines.append(
            f"| {tool} | {r['objects']} | {size} | {r['topology']} | {r['objects_per_s']:.0f} | "
            f"{r['mb_per_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['tool_cpu_s']:.1f} | "
            f"{', '.join(f'{x:.1f}' for x in r['minio_cpu_s'])} | {bad} | {share} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _label(count: int, size: int) -> str:
    return f"{size // KiB}k" if size < MiB else f"{size // MiB}m"


def one_run(
    tool: str,
    clients: dict[str, Minio],
    ep1: str,
    source: str,
    size: int,
    dst_ep: str,
    digests: dict[str, str],
    creds: tuple[str, str],
    mc: str,
    config_dir: str,
    concurrency: int,
) -> dict[str, Any]:
    """One tool copying the whole source into a fresh bucket, then every replica checked. The
    limit (``limit@S``: s3limit with setting S of ``limit.sweep``) PUTs bytes of its own across servers: its
    replicas are not checked against the source there."""
    count = len(digests)
    dst = fresh_bucket(clients[dst_ep], f"bench-{tool.split('@')[0]}")
    quiesce()
    servers_before, tool_before = minio_cpu_seconds(), children_cpu_seconds()
    rename = lambda k: k  # noqa: E731
    if tool == "paraflow":
        seconds, rss = run_paraflow(ep1, source, dst_ep, dst, dst_ep == ep1, creds)
        # Replicas carry neither the run nor the attempt.
        rename = lambda k: k.replace(f"{RUN_UID}/", "", 1).replace("/a1/", "/", 1)  # noqa: E731
    elif tool == "mc":
        seconds, rss = run_mc(mc, ep1, source, dst_ep, dst, creds, config_dir)
    elif tool == "rclone":
        seconds, rss = run_rclone(ep1, source, dst_ep, dst, creds, concurrency)
    else:
        same = dst_ep == ep1
        seconds, rss = run_limit(
            endpoint=dst_ep,
            creds=creds,
            source=source if same else None,
            target=dst,
            keys=list(digests),
            size=size,
            setting=tool.split("@")[1],
        )
    servers = [round(b - a, 1) for a, b in zip(servers_before, minio_cpu_seconds(), strict=True)]
    tool_cpu = round(children_cpu_seconds() - tool_before, 1)
    checked = not tool.startswith("limit") or dst_ep == ep1
    bad = mismatches(clients[dst_ep], dst, digests, rename) if checked else None
    drop_bucket(clients[dst_ep], dst)
    return {
        "seconds": round(seconds, 2),
        "objects_per_s": round(count / seconds, 1),
        "mb_per_s": round(count * size / seconds / 1e6, 1),
        "peak_rss_mib": round(rss, 1),
        "tool_cpu_s": tool_cpu,
        "minio_cpu_s": servers if dst_ep != ep1 else servers[:1],
        "mismatches": bad,
    }


def limit_run(chosen: dict[str, str], topology: str, size: int, run: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The limit's run for one round: on the first, each setting of the sweep (the fastest is
    kept, and chosen for the rounds after); then the chosen one."""
    if topology in chosen:
        return run(f"limit@{chosen[topology]}") | {"setting": chosen[topology]}
    tried = {n: run(f"limit@{n}") for n in sweep(size, copy=topology == "same-server")}
    best = min(tried, key=lambda n: tried[n]["seconds"])
    chosen[topology] = best
    return tried[best] | {"setting": best, "sweep_s": {n: r["seconds"] for n, r in tried.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description="paraflow vs mc mirror vs rclone sync")
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply every object count (a quick look: 0.1)")
    parser.add_argument("--concurrency", type=int, default=64, help="rclone's --transfers and --checkers")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool per row; the row keeps the median")
    parser.add_argument("--sets", default="all", help="data sets to run, e.g. 64m,256m (of 4k,8k,64m,256m)")
    parser.add_argument("--merge", action="store_true", help="keep the results file's rows of the other data sets")
    args = parser.parse_args()
    ep1, ep2 = env_or_die("PARAFLOW_TEST_S3_ENDPOINT"), env_or_die("PARAFLOW_TEST_S3_ENDPOINT_2")
    creds = (env_or_die("PARAFLOW_TEST_S3_ACCESS_KEY"), env_or_die("PARAFLOW_TEST_S3_SECRET_KEY"))
    mc = shutil.which("mc") or ""
    if not mc or "minio" not in subprocess.run([mc, "--version"], capture_output=True, text=True).stdout.lower():
        raise SystemExit(
            "MinIO's mc is not on PATH (Debian's `mc` is another program): eval \"$(hack/cluster.sh env)\""
        )
    if not shutil.which("rclone"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "rclone"], check=True, capture_output=True)
    clients = {ep1: make_client(ep1, *creds), ep2: make_client(ep2, *creds)}
    config_dir = f"/tmp/paraflow-bench-mc-{uuid.uuid4().hex[:6]}"
    rows = []
    tools = [*TOOLS]
    wanted = DATA_SETS if args.sets == "all" else [d for d in DATA_SETS if _label(*d) in args.sets.split(",")]
    for full_count, size in wanted:
        count = max(1, round(full_count * args.scale))
        source, digests = make_source(clients[ep1], count, size)
        # Read once before any tool, so no tool pays for a cold source; and each round starts
        # with another tool, so none is always first after the previous round's cleanup.
        mismatches(clients[ep1], source, digests, lambda k: k)
        chosen: dict[str, str] = {}  # the limit's setting, by topology
        for topology, dst_ep in (("same-server", ep1), ("cross-server", ep2)):
            runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
            run = functools.partial(
                one_run,
                clients=clients,
                ep1=ep1,
                source=source,
                size=size,
                dst_ep=dst_ep,
                digests=digests,
                creds=creds,
                mc=mc,
                config_dir=config_dir,
                concurrency=args.concurrency,
            )
            for _ in range(args.repeat):
                tools = tools[1:] + tools[:1]
                for tool in tools:
                    result = limit_run(chosen, topology, size, run) if tool == "limit" else run(tool)
                    runs[tool].append(result)
                    print(tool, result, flush=True)
            for tool, done in runs.items():
                # A tool's median run by time (the slower middle one of an even count); the limit's
                # fastest, as a ceiling is; each run listed.
                ordered = sorted(done, key=lambda r: r["seconds"])
                middle = (len(ordered) - 1) // 2 + (len(ordered) % 2 == 0)
                row = {"tool": tool, "objects": count, "object_bytes": size, "topology": topology}
                row |= ordered[0 if tool == "limit" else middle]
                row["runs_s"] = [r["seconds"] for r in done]
                checked = [r["mismatches"] for r in done if r["mismatches"] is not None]
                row["mismatches"] = sum(checked) if checked else None
                if tool == "limit":
                    row["sweep_s"] = done[0]["sweep_s"]  # the first round tried them all
                rows.append(row)
        drop_bucket(clients[ep1], source)
    if args.merge and (RESULTS / "replication.json").exists():
        ran = {(r["objects"], r["object_bytes"]) for r in rows}
        old = json.loads((RESULTS / "replication.json").read_text())["rows"]
        rows += [r for r in old if (r["objects"], r["object_bytes"]) not in ran]
    rows.sort(
        key=lambda r: (
            r["object_bytes"] >= MiB,
            r["objects"],
            r["topology"],
            TOOLS.index(r["tool"]),
        )
    )
    judge(rows)
    doc = {"machine": machine(), "versions": versions(mc), "rows": rows}
    write_results("replication", doc, table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
