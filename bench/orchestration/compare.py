"""Before/after rows of the orchestration benchmark, from result files of runs made in one session
on one cluster (one run per side and order, so that an order effect shows), as one table:

    python -m bench.orchestration.compare --name planner-refactor \
        before=bench/results/ab-before.json after=bench/results/ab-after.json \
        before=bench/results/ab-before-2.json after=bench/results/ab-after-2.json

Each row: the configuration, every run's makespan, operator CPU seconds and CPU per partition,
per side, and the after/before ratio of their medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import write_results


def _config(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["partitions"], row["max_concurrency"], row.get("succeeded_jobs", "")


def compare(sides: list[tuple[str, Path]]) -> dict[str, Any]:
    runs: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    floors: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for side, path in sides:
        for row in json.loads(path.read_text())["rows"]:
            if row["system"] == "paraflow" and not row.get("simulated"):
                runs[_config(row)][side].append(row)
            elif row["system"] == "floor":
                floors[row["partitions"], row["max_concurrency"]].append(row["makespan_s"])
    out = []
    for config, by_side in sorted(runs.items()):
        entry: dict[str, Any] = {"partitions": config[0], "max_concurrency": config[1], "succeeded_jobs": config[2]}
        for side, rows in by_side.items():
            entry[side] = {
                "makespan_s": [r["makespan_s"] for r in rows],
                "controller_cpu_s": [r["controller_cpu_s"] for r in rows],
                "cpu_ms_per_partition": [round(1000 * r["controller_cpu_s"] / r["partitions"], 2) for r in rows],
                "commits": [r.get("commit", "") for r in rows],
            }
        if "before" in entry and "after" in entry:
            for key in ("makespan_s", "controller_cpu_s"):
                entry[f"{key}_after_over_before"] = round(
                    statistics.median(entry["after"][key]) / statistics.median(entry["before"][key]), 3
                )
        floor = floors.get(config[:2])
        if floor:
            entry["floor_makespan_s"] = floor
        out.append(entry)
    return {"rows": out}


def table(doc: dict[str, Any]) -> str:
    lines = [
        "| N | P | succeededJobs | floor s | makespan s before | after | after/before | CPU s before | after "
        "| after/before | CPU ms per partition before | after |",
        "|---:|---:|---|---|---|---|---:|---|---|---:|---|---|",
    ]
    for r in doc["rows"]:
        b, a = r.get("before", {}), r.get("after", {})

        def join(side: dict[str, Any], key: str) -> str:
            return ", ".join(str(v) for v in side.get(key, []))

        lines.append(
            f"| {r['partitions']:,} | {r['max_concurrency']} | {r['succeeded_jobs']} "
            f"| {', '.join(str(f) for f in r.get('floor_makespan_s', []))} "
            f"| {join(b, 'makespan_s')} | {join(a, 'makespan_s')} | {r.get('makespan_s_after_over_before', '')} "
            f"| {join(b, 'controller_cpu_s')} | {join(a, 'controller_cpu_s')} "
            f"| {r.get('controller_cpu_s_after_over_before', '')} "
            f"| {join(b, 'cpu_ms_per_partition')} | {join(a, 'cpu_ms_per_partition')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", required=True, help="results file stem")
    parser.add_argument("sides", nargs="+", help="before=FILE or after=FILE, as many as were run")
    args = parser.parse_args()
    sides = [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in args.sides]
    doc = compare(sides)
    write_results(args.name, doc, table(doc))
    print(table(doc))


if __name__ == "__main__":
    main()
