"""``paraflow-worker``: the entry point of the worker image."""

from __future__ import annotations

import argparse
import os

from paraflow_worker import logs, partition, replicate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="paraflow-worker", description="paraflow's in-pod commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("partition", help="list the input prefix and write the partition plan (env: PARAFLOW_*)")
    sub.add_parser("replicate", help="copy a run's outputs to its replication targets (env: PARAFLOW_REPLICATION)")
    args = parser.parse_args(argv)
    logs.configure(dict(os.environ))
    if args.command == "partition":
        partition.main()
    elif args.command == "replicate":
        replicate.main()
