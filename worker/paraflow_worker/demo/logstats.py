"""``python -m paraflow_worker.demo.logstats``: the daily-logs processor, and its collation.

Process (in a partition pod): stream each gzip'd web-server log of this shard's slice, parse
Combined Log Format lines, and write ``stats-s<shard>.json`` (requests, bytes, status-code
counts, path counts, unparsable lines) under the attempt's output prefix.

Collate (anywhere): ``python -m paraflow_worker.demo.logstats collate s3://bucket/.../manifest.json``
follows the result manifest to every winning shard's stats and merges them.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from minio import Minio

from paraflow_worker import sdk
from paraflow_worker.contract import ResultManifest, ShardResult
from paraflow_worker.storage import client_from_env, get_json

LINE = re.compile(r'^(\S+) \S+ \S+ \[[^\]]+\] "(?:[A-Z]+) (\S+)[^"]*" (\d{3}) (\d+|-)')
TOP_PATHS = 10


@dataclass
class Stats:
    requests: int = 0
    bytes: int = 0
    unparsed: int = 0
    status: Counter[str] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)

    def add_line(self, line: str) -> None:
        m = LINE.match(line)
        if m is None:
            self.unparsed += 1
            return
        _, path, code, size = m.groups()
        self.requests += 1
        self.bytes += 0 if size == "-" else int(size)
        self.status[code] += 1
        self.paths[path] += 1

    def merge(self, other: Stats) -> None:
        self.requests += other.requests
        self.bytes += other.bytes
        self.unparsed += other.unparsed
        self.status.update(other.status)
        self.paths.update(other.paths)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "unparsed": self.unparsed,
            "status": dict(sorted(self.status.items())),
            "paths": dict(self.paths),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Stats:
        return cls(doc["requests"], doc["bytes"], doc["unparsed"], Counter(doc["status"]), Counter(doc["paths"]))


def process() -> None:
    with sdk.shard() as shard:
        stats = Stats()
        items = shard.objects()
        for item in items:
            with shard.open(item) as raw, gzip.GzipFile(fileobj=raw) as unzipped:
                for line in io.TextIOWrapper(unzipped, encoding="utf-8", errors="replace"):
                    stats.add_line(line)
        shard.write(f"stats-s{shard.shard}.json", json.dumps(stats.to_json()).encode(), content_type="application/json")
        print(f"partition {shard.partition} shard {shard.shard}: {len(items)} files, {stats.requests} requests")


def split_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise SystemExit(f"expected s3://bucket/key, got {url!r}")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def collate(client: Minio, manifest_url: str) -> tuple[Stats, ResultManifest]:
    bucket, key = split_url(manifest_url)
    manifest = get_json(client, bucket, key, ResultManifest)
    total = Stats()
    for entry in manifest.succeeded:
        for obj in client.list_objects(bucket, prefix=entry.results_prefix, recursive=True):
            result = get_json(client, bucket, obj.object_name or "", ShardResult)
            for out in result.outputs:
                response = client.get_object(bucket, out.key)
                try:
                    total.merge(Stats.from_json(json.loads(response.read())))
                finally:
                    response.close()
                    response.release_conn()
    return total, manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="logstats")
    sub = parser.add_subparsers(dest="command")
    collate_cmd = sub.add_parser("collate", help="merge the per-shard stats named by a result manifest")
    collate_cmd.add_argument("manifest", help="s3://bucket/.../manifest.json (env PARAFLOW_S3_* for access)")
    args = parser.parse_args(argv)
    if args.command != "collate":
        process()
        return
    stats, manifest = collate(client_from_env(), args.manifest)
    summary = stats.to_json()
    summary["paths"] = dict(stats.paths.most_common(TOP_PATHS))
    summary["partitions"] = len(manifest.succeeded)
    json.dump(summary, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
