"""``python -m paraflow_worker.demo.logstats``: the daily-logs processor, and its reduce step.

Process (in a partition pod): stream each gzip'd web-server log of this shard's slice, parse
Combined Log Format lines, and write ``stats-s<shard>.json`` (requests, bytes, status-code
counts, path counts, unparsable lines) under the attempt's output prefix.

Reduce (``... logstats reduce``, in the reduce pod): merge every winning shard's stats into
``summary.json``: the day's totals, status codes, top paths, and the partitions they cover.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from paraflow_worker import sdk

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


def collate(run: sdk.Reducer) -> Stats:
    """Every winning shard's stats, merged."""
    total = Stats()
    for output in run.map_outputs():
        if output.name.startswith("stats-"):
            with run.open(output) as stream:
                total.merge(Stats.from_json(json.loads(stream.read())))
    return total


def reduce() -> None:
    with sdk.reduce() as run:
        stats = collate(run)
        summary = stats.to_json()
        summary["paths"] = dict(stats.paths.most_common(TOP_PATHS))
        summary["partitions"] = len(run.manifest.succeeded)
        summary["failedPartitions"] = run.manifest.failed
        run.write("summary.json", json.dumps(summary, indent=2).encode() + b"\n", content_type="application/json")
        print(f"{stats.requests} requests over {summary['partitions']} partitions")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="logstats")
    parser.add_argument("step", nargs="?", choices=["process", "reduce"], default="process")
    args = parser.parse_args(argv)
    if args.step == "reduce":
        reduce()
    else:
        process()


if __name__ == "__main__":
    main()
