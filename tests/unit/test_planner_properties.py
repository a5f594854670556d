"""Properties of whole runs: the planner driven against a simulated cluster until it finishes.

Each partition attempt's fate (succeed or fail) is drawn up front; each step some active Jobs
finish, time moves on, and ``maxConcurrency`` may change mid-run, as a user patching it would.
With ``succeededJobs: Delete`` the Jobs a pass names are deleted, and some status writes are
lost (a pass whose patch failed, or an operator killed before it), as a cluster would do.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paraflow import constants as c
from paraflow.models import WorkflowStatus
from paraflow.planning import indexsets, planner
from paraflow.planning.planner import CreatePartition, JobFacts, JobState, Observed, PlanRead
from paraflow.planning.retry import delay_seconds
from tests.unit.builders import T0, make_spec

pytestmark = pytest.mark.unit


@st.composite
def runs(draw: st.DrawFn) -> dict[str, object]:
    total = draw(st.integers(1, 40))
    max_attempts = draw(st.integers(1, 4))
    return {
        "total": total,
        "max_attempts": max_attempts,
        "concurrency": draw(st.lists(st.integers(1, 12), min_size=1, max_size=4)),
        "tolerated": draw(st.one_of(st.none(), st.integers(0, total))),
        "fails": draw(st.sets(st.tuples(st.integers(0, total - 1), st.integers(1, max_attempts)))),
        "finish_order": draw(st.randoms(use_true_random=False)),
        "delete_succeeded": draw(st.booleans()),
        "kept": draw(st.integers(0, 5)),
        "lost_writes": draw(st.sets(st.integers(0, 60), max_size=10)),
    }


@settings(max_examples=150, deadline=None)
@given(runs())
def test_a_run_never_exceeds_max_concurrency_and_ends_with_each_partition_accounted_once(run: dict) -> None:
    total, max_attempts = run["total"], run["max_attempts"]
    rnd = run["finish_order"]
    spec_kw = {"retry.maxAttempts": max_attempts, "retry.intervalSeconds": 5, "retry.maxDelaySeconds": 20}
    spec_kw["succeededJobs"] = "Delete" if run["delete_succeeded"] else "Retain"
    if run["tolerated"] is not None:
        spec_kw["failureTolerance.count"] = run["tolerated"]
    concurrency = run["concurrency"]

    partitioner = JobFacts("wf-part-a1", c.ROLE_PARTITIONER, None, 1, JobState.SUCCEEDED, T0)
    jobs: dict[tuple[int, int], JobFacts] = {}
    ever: dict[tuple[int, int], JobFacts] = {}  # every Job created, deleted or not, as it ended
    status, now = WorkflowStatus(), T0
    for step in range(1000):
        spec = make_spec(maxConcurrency=concurrency[min(step // 10, len(concurrency) - 1)], **spec_kw)
        obs = Observed(
            jobs=[partitioner, *jobs.values()],
            generation=1,
            now=now,
            uid="u",
            plan=PlanRead(partition_count=total) if planner.needs_plan(status, [partitioner]) else None,
            kept_while_running=run["kept"],
        )
        result = planner.plan(spec, status, obs)
        for action in result.creates:
            assert isinstance(action, CreatePartition)
            key = (action.index, action.attempt)
            assert key not in ever, "a Job name is never created twice"
            previous = ever.get((action.index, action.attempt - 1))
            if previous is not None:
                assert previous.state is JobState.FAILED
                earliest = previous.finished_at + dt.timedelta(  # type: ignore[operator]
                    seconds=delay_seconds(spec.retry, action.attempt - 1, f"u/{action.index}")
                )
                assert now >= earliest, "a retry never starts before its backoff elapsed"
            jobs[key] = ever[key] = JobFacts(
                f"wf-p{key[0]}-a{key[1]}", c.ROLE_PARTITION, key[0], key[1], JobState.ACTIVE
            )
        active = [k for k, j in jobs.items() if j.state is JobState.ACTIVE]
        assert len(result.creates) == 0 or len(active) <= spec.max_concurrency
        if not run["delete_succeeded"]:
            assert not result.deletes, "Retain deletes nothing"
        if step in run["lost_writes"]:
            now += dt.timedelta(seconds=1)
            continue  # the status patch failed: nothing after it in the pass ran either
        status = result.status
        sets = {
            name: indexsets.expand(getattr(status, f"{name}_indexes"))
            for name in ("succeeded", "failed", "running", "queued")
        }
        for name, found in sets.items():
            assert len(found) == getattr(status.partitions, name), f"{name}Indexes names each partition it counts"
        assert sum(len(x) for x in sets.values()) == len(set().union(*sets.values())), "a partition has one state"
        for key, job in list(jobs.items()):
            if job.name in result.deletes:
                assert job.state is JobState.SUCCEEDED, "only a succeeded Job is deleted"
                del jobs[key]
        if run["delete_succeeded"] and status.phase not in ("Succeeded", "Failed"):
            kept = [j for j in jobs.values() if j.state is JobState.SUCCEEDED and j.partition in recorded(status)]
            assert len(kept) <= run["kept"], "a running workflow keeps no more succeeded Jobs than it may"
        if status.phase in ("Succeeded", "Failed") and not active:
            break
        now += dt.timedelta(seconds=3)
        # At least one Job finishes per step, so every run ends; which ones and how many is drawn.
        for key in rnd.sample(active, k=rnd.randint(min(1, len(active)), len(active))):
            state = JobState.FAILED if key in run["fails"] else JobState.SUCCEEDED
            jobs[key] = ever[key] = JobFacts(jobs[key].name, c.ROLE_PARTITION, key[0], key[1], state, now)
    else:
        raise AssertionError("the run did not finish")

    if run["delete_succeeded"]:
        # The passes after the last: every succeeded Job goes, then the workflow settles.
        obs = Observed(jobs=[partitioner, *jobs.values()], generation=1, now=now, uid="u")
        gone = planner.plan(spec, status, obs).deletes
        assert sorted(gone) == sorted(j.name for j in jobs.values() if j.state is JobState.SUCCEEDED)
        left = [partitioner, *(j for j in jobs.values() if j.name not in gone)]
        assert not planner.plan(spec, status, Observed(jobs=left, generation=1, now=now, uid="u")).deletes

    succeeded = [k for k, j in ever.items() if j.state is JobState.SUCCEEDED]
    assert len({p for p, _ in succeeded}) == len(succeeded), "no partition succeeds twice"
    if status.phase == "Succeeded":
        assert status.partitions.succeeded + status.partitions.failed == total
        assert result.manifest is None or sorted(p for p, _ in result.manifest) == sorted(p for p, _ in succeeded)
    else:
        assert status.partitions.failed > (run["tolerated"] or 0)


def recorded(status: WorkflowStatus) -> set[int]:
    return indexsets.expand(status.succeeded_indexes)


@st.composite
def replicated_runs(draw: st.DrawFn) -> dict[str, object]:
    total = draw(st.integers(1, 30))
    return {
        "total": total,
        "concurrency": draw(st.integers(1, 8)),
        "replication_concurrency": draw(st.one_of(st.none(), st.integers(1, 8))),
        "fails": draw(st.sets(st.integers(0, total - 1), max_size=3)),
        "finish_order": draw(st.randoms(use_true_random=False)),
    }


@settings(max_examples=150, deadline=None)
@given(replicated_runs())
def test_partitions_and_replications_each_keep_their_own_limit_and_every_winner_is_copied_once(run: dict) -> None:
    """Per-partition replication: replication Jobs never exceed replication.maxConcurrency (by
    default maxConcurrency) and partition Jobs never exceed maxConcurrency, whatever finishes when;
    at the end every winning attempt, and only those, was copied exactly once."""
    total, rnd = run["total"], run["finish_order"]
    replication: dict[str, object] = {"destinations": [{"name": "archive", "bucket": "archive"}]}
    if run["replication_concurrency"] is not None:
        replication["maxConcurrency"] = run["replication_concurrency"]
    spec = make_spec(
        maxConcurrency=run["concurrency"],
        replication=replication,
        **{"retry.maxAttempts": 1, "failureTolerance.count": total},
    )
    copy_limit = run["replication_concurrency"] or run["concurrency"]
    partitioner = JobFacts("wf-part-a1", c.ROLE_PARTITIONER, None, 1, JobState.SUCCEEDED, T0)
    jobs: dict[str, JobFacts] = {}
    status, now = WorkflowStatus(), T0
    for _ in range(1000):
        seen = [partitioner, *jobs.values()]
        obs = Observed(
            jobs=seen,
            generation=1,
            now=now,
            uid="u",
            plan=PlanRead(partition_count=total) if planner.needs_plan(status, [partitioner]) else None,
            reports={
                j.name: planner.ReplicationTally(copied=1, bytes=1) for j in planner.needs_reports(spec, status, seen)
            },
        )
        result = planner.plan(spec, status, obs)
        for action in result.creates:
            if isinstance(action, CreatePartition):
                name, role = f"wf-p{action.index}-a{action.attempt}", c.ROLE_PARTITION
            else:
                assert jobs[f"wf-p{action.index}-a{action.winner}"].state is JobState.SUCCEEDED, "copies a winner"
                name, role = f"wf-r{action.index}-a{action.attempt}", c.ROLE_REPLICATION
            assert name not in jobs, "a Job name is never created twice"
            jobs[name] = JobFacts(name, role, action.index, action.attempt, JobState.ACTIVE)
        active = [j for j in jobs.values() if j.state is JobState.ACTIVE]
        assert sum(j.role == c.ROLE_PARTITION for j in active) <= run["concurrency"]
        assert sum(j.role == c.ROLE_REPLICATION for j in active) <= copy_limit
        status = result.status
        if status.phase in ("Succeeded", "Failed") and not active:
            break
        now += dt.timedelta(seconds=3)
        for job in rnd.sample(active, k=rnd.randint(min(1, len(active)), len(active))):
            failed = job.role == c.ROLE_PARTITION and job.partition in run["fails"]
            state = JobState.FAILED if failed else JobState.SUCCEEDED
            jobs[job.name] = JobFacts(job.name, job.role, job.partition, job.attempt, state, now)
    else:
        raise AssertionError("the run did not finish")

    won = sorted(j.partition for j in jobs.values() if j.role == c.ROLE_PARTITION and j.state is JobState.SUCCEEDED)
    copied = sorted(j.partition for j in jobs.values() if j.role == c.ROLE_REPLICATION)
    assert copied == won, "every winning partition copied exactly once, no other"
    assert status.phase == "Succeeded", status.conditions
