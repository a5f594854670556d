"""The CPU one reconcile pass costs, in-process, late in a large run that keeps its Jobs.

    .venv/bin/python -m bench.orchestration.passcost --partitions 10000 --concurrency 50

Why: with ``succeededJobs: Retain`` every pass sees every Job the run made, so a pass late in a
10,000-partition run walks 10,000 JobFacts. The orchestration benchmark measures the whole
operator on a cluster, where the control plane's drift (about 10 % between runs of the same code)
hides a pass that got a few milliseconds slower; this measures the pass alone, on the same
state each time: the planner (``plan``) and a whole ``Reconciler.reconcile`` against a fake of
our KubeApi (no I/O), the fastest and the median of ``--rounds``.

The state is made by the planner itself (as ``run.simulated`` does): every pass finishes what
ran in the previous one, and here every Job is kept, until ``--left`` partitions are left.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from typing import Any

from tests.unit.builders import make_spec, spec_dict
from tests.unit.test_reconciler import FakeApi

from bench.common import machine, write_results
from paraflow import constants as c
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.actions import CreatePartition
from paraflow.planning.planner import JobFacts, JobState, Observed, PlanRead
from paraflow.reconciler import Reconciler
from paraflow.settings import Settings

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def late_state(partitions: int, concurrency: int, left: int) -> tuple[WorkflowStatus, list[JobFacts], int]:
    """(status, every Job so far, passes) once no more than ``left`` partitions are unfinished."""
    spec = make_spec(maxConcurrency=concurrency)
    part = JobFacts("p", c.ROLE_PARTITIONER, None, 1, JobState.SUCCEEDED, NOW)
    status, jobs, passes, now = WorkflowStatus(), {}, 0, NOW
    while status.partitions.succeeded < partitions - left:
        obs = Observed(
            jobs=[part, *jobs.values()],
            generation=1,
            now=now,
            uid="bench",
            plan=PlanRead(partition_count=partitions) if planner.needs_plan(status, [part]) else None,
        )
        result = planner.plan(spec, status, obs)
        status, passes, now = result.status, passes + 1, now + dt.timedelta(seconds=1)
        for key, job in jobs.items():
            if job.state is JobState.ACTIVE:
                jobs[key] = JobFacts(job.name, job.role, job.partition, job.attempt, JobState.SUCCEEDED, now)
        for create in result.creates:
            assert isinstance(create, CreatePartition)
            name = f"bench-p{create.index}-a{create.attempt}"
            jobs[create.index] = JobFacts(
                name, c.ROLE_PARTITION, create.index, create.attempt, JobState.ACTIVE, created_at=now, uid=name
            )
    return status, [part, *jobs.values()], passes


def timed_ms(fn: Any, rounds: int) -> tuple[float, float]:
    """(fastest, median) in ms: on 2 cores shared with a cluster the fastest is the steadier figure."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(min(times) * 1000, 2), round(statistics.median(times) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--left", type=int, default=100, help="unfinished partitions at the measured pass")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--name", default="pass-cost", help="results file stem")
    args = parser.parse_args()
    status, jobs, passes = late_state(args.partitions, args.concurrency, args.left)
    spec = make_spec(maxConcurrency=args.concurrency)
    obs = Observed(jobs=jobs, generation=1, now=NOW + dt.timedelta(seconds=passes), uid="bench")
    plan_ms = timed_ms(lambda: planner.plan(spec, status, obs), args.rounds)

    body: dict[str, Any] = {
        "metadata": {"name": "wf", "namespace": "ns", "uid": "bench", "generation": 1},
        "spec": spec_dict(maxConcurrency=args.concurrency),
        "status": status.model_dump(mode="json", exclude_none=True),
    }
    api = FakeApi(server=body)
    reconciler = Reconciler(api, Settings(), emit=lambda _, e: None, clock=lambda: obs.now)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    reconcile_ms = timed_ms(lambda: loop.run_until_complete(reconciler.reconcile(body, jobs)), args.rounds)
    loop.close()
    row = {
        "partitions": args.partitions,
        "max_concurrency": args.concurrency,
        "jobs_seen": len(jobs),
        "plan_ms_fastest": plan_ms[0],
        "plan_ms_median": plan_ms[1],
        "reconcile_ms_fastest": reconcile_ms[0],
        "reconcile_ms_median": reconcile_ms[1],
        "rounds": args.rounds,
    }
    print(row)
    write_results(
        args.name,
        {"machine": machine(), "rows": [row]},
        "| partitions | maxConcurrency | Jobs seen by the pass | plan ms (fastest, median) | "
        "reconcile ms, fake API (fastest, median) |\n"
        "|---:|---:|---:|---:|---:|\n"
        f"| {row['partitions']} | {row['max_concurrency']} | {row['jobs_seen']} | {plan_ms[0]}, {plan_ms[1]} | "
        f"{reconcile_ms[0]}, {reconcile_ms[1]} |\n",
    )


if __name__ == "__main__":
    main()
