"""``paraflow-worker``: the entry point of the worker image."""

from __future__ import annotations

import argparse

from paraflow_worker import partition


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="paraflow-worker", description="paraflow's in-pod commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("partition", help="list the input prefix and write the partition plan (env: PARAFLOW_*)")
    args = parser.parse_args(argv)
    if args.command == "partition":
        partition.main()
