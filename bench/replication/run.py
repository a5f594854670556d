"""Replication benchmark: paraflow's engine against `mc mirror` and `rclone sync`, on the local
cluster's two MinIO servers, in one run.

    hack/cluster.sh up && eval "$(hack/cluster.sh env)" && .venv/bin/python -m bench.replication.run

Data sets: 10,000 objects of 4 KiB and 20 objects of 64 MiB; topologies: same-server (bucket to
bucket on one MinIO) and cross-server (MinIO to the other MinIO). Every tool copies the same
source objects into an empty destination; afterwards every replica is read back and hashed
against its source (``mismatches``). Results: bench/results/replication.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from minio import Minio

from bench.common import machine, measure, write_results
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
        key = f"{contract.attempt_output_prefix(OUT, RUN_UID, p, 1)}obj-{i:06d}"
        client.put_object(bucket, key, io.BytesIO(data), size, content_type="application/octet-stream")
        digest = hashlib.sha256(data).hexdigest()
        digests[key] = digest
        return OutputObject(key=key, size=size, sha256=digest)

    with ThreadPoolExecutor(16) as pool:
        objects = list(pool.map(one, range(count)))
    partitions = -(-count // PER_PARTITION)
    for p in range(partitions):
        outs = objects[p * PER_PARTITION : (p + 1) * PER_PARTITION]
        put_json(
            client,
            bucket,
            contract.shard_result_key(RUN, p, 1, 0),
            ShardResult(
                partition=p,
                attempt=1,
                shard=0,
                outputs=outs,
                output_prefix=contract.attempt_output_prefix(OUT, RUN_UID, p, 1),
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
    put_json(client, bucket, contract.manifest_key(RUN), manifest)
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
            return int(hashlib.sha256(response.read()).hexdigest() != digest)
        finally:
            response.close()
            response.release_conn()

    with ThreadPoolExecutor(32) as pool:
        return sum(pool.map(check, expected.items()))


def run_paraflow(
    src_ep: str, src_bucket: str, dst_ep: str, dst_bucket: str, same: bool, creds: tuple[str, str], concurrency: int
) -> tuple[float, float]:
    task = ReplicationTask(
        label="bench",
        output_prefix=OUT,
        partitions=None,
        verify="checksum",
        concurrency=concurrency,
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
        access: creds[0],
        secret: creds[1],
    }
    seconds, rss, out = measure([str(Path(os.sys.executable).with_name("paraflow-worker")), "replicate"], env)
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

    return {
        "paraflow": "0.1.0",
        "minio-py": minio.__version__,
        "mc": first_line([mc, "--version"]),
        "rclone": first_line(["rclone", "version"]),
        "minio-server": os.environ.get("PARAFLOW_MINIO_VERSION", ""),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tool | objects | object size | topology | objects/s | MB/s | peak RSS MiB | mismatches |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        size = (
            f"{r['object_bytes'] // 1024} KiB" if r["object_bytes"] < 1024**2 else f"{r['object_bytes'] // 1024**2} MiB"
        )
        lines.append(
            f"| {r['tool']} | {r['objects']} | {size} | {r['topology']} | {r['objects_per_s']:.0f} | "
            f"{r['mb_per_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['mismatches']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="paraflow vs mc mirror vs rclone sync")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
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
    for count, size in ((args.small, 4096), (args.large, 64 * 1024**2)):
        source, digests = make_source(clients[ep1], count, size)
        for topology, dst_ep in (("same-server", ep1), ("cross-server", ep2)):
            for tool in ("paraflow", "mc", "rclone"):
                dst = fresh_bucket(clients[dst_ep], f"bench-{tool}")
                if tool == "paraflow":
                    seconds, rss = run_paraflow(ep1, source, dst_ep, dst, dst_ep == ep1, creds, args.concurrency)
                    # Replicas carry neither the run nor the attempt.
                    rename = lambda k: k.replace(f"{RUN_UID}/", "", 1).replace("/a1/", "/", 1)  # noqa: E731
                elif tool == "mc":
                    seconds, rss = run_mc(mc, ep1, source, dst_ep, dst, creds, config_dir)
                    rename = lambda k: k  # noqa: E731
                else:
                    seconds, rss = run_rclone(ep1, source, dst_ep, dst, creds, args.concurrency)
                    rename = lambda k: k  # noqa: E731
                bad = mismatches(clients[dst_ep], dst, digests, rename)
                rows.append(
                    {
                        "tool": tool,
                        "objects": count,
                        "object_bytes": size,
                        "topology": topology,
                        "seconds": round(seconds, 2),
                        "objects_per_s": round(count / seconds, 1),
                        "mb_per_s": round(count * size / seconds / 1e6, 1),
                        "peak_rss_mib": round(rss, 1),
                        "mismatches": bad,
                    }
                )
                print(rows[-1], flush=True)
                drop_bucket(clients[dst_ep], dst)
        drop_bucket(clients[ep1], source)
    doc = {"machine": machine(), "versions": versions(mc), "rows": rows}
    write_results("replication", doc, table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
