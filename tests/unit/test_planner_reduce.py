"""The reduce step in the planner: once, after the map and its manifest, retried as spec.retry
says, failing the run when it fails for good, re-run by a redrive, and waited for by the
run-wide replication that carries its outputs."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from paraflow import constants as c
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.conditions import get_condition
from paraflow.planning.planner import (
    CreatePartition,
    CreateReduce,
    CreateReplication,
    JobFacts,
    JobState,
    Observed,
    Plan,
)
from paraflow.reasons import ConditionType, Reason
from tests.unit.builders import T0, make_spec
from tests.unit.test_planner import observe, part, partitioned

pytestmark = pytest.mark.unit

REDUCE = {"image": "registry.example/summarise:1"}
AFTER_ALL = {"mode": "afterAll", "destinations": [{"name": "archive", "bucket": "archive"}]}


def reducer(attempt: int, state: JobState, finished: dt.datetime = T0) -> JobFacts:
    done = None if state is JobState.ACTIVE else finished
    return JobFacts(f"wf-reduce-a{attempt}", c.ROLE_REDUCE, None, attempt, state, done, "DeadlineExceeded: too slow")


def copy_all(attempt: int, state: JobState) -> JobFacts:
    return JobFacts(f"wf-repl-a{attempt}", c.ROLE_REPLICATION_ALL, None, attempt, state, T0)


def observe_all(
    *jobs: JobFacts, now: dt.datetime = T0, redrive: str = "", unrecorded: tuple[int, ...] = ()
) -> Observed:
    """What a pass observes, with each succeeded reduce attempt's record read, as the reconciler
    reads it: there, unless its attempt is in ``unrecorded``."""
    records = {
        j.attempt: ("it wrote no record" if j.attempt in unrecorded else "")
        for j in jobs
        if j.role == c.ROLE_REDUCE and j.state is JobState.SUCCEEDED
    }
    return replace(observe(*jobs, now=now, redrive=redrive), reduce_records=records)


def settle(spec: Any, status: WorkflowStatus, *jobs: JobFacts, redrive: str = "") -> Plan:
    """One pass, with the manifest written as the reconciler writes it when asked for."""
    result = planner.plan(spec, status, observe_all(*jobs, redrive=redrive))
    if result.manifest is not None:
        result.status.manifest = "s3://processed/daily/_paraflow/uid-1/manifest.json"
    return result


def mapped(spec: Any, total: int = 2) -> tuple[WorkflowStatus, list[JobFacts]]:
    """Status and Jobs once every partition succeeded and the manifest was written."""
    jobs = [part(p, 1, JobState.SUCCEEDED) for p in range(total)]
    return settle(spec, partitioned(total), *jobs).status, jobs


def test_the_reduce_step_waits_for_the_whole_map() -> None:
    spec = make_spec(reduce=REDUCE)
    result = settle(spec, partitioned(2), part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.ACTIVE))
    assert not any(isinstance(x, CreateReduce) for x in result.creates)
    assert result.status.phase == "Running"
    assert result.status.reduce is not None and result.status.reduce.phase == "Pending"


def test_the_reduce_step_starts_in_the_pass_that_writes_the_manifest_and_only_once() -> None:
    spec = make_spec(reduce=REDUCE)
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    first = settle(spec, partitioned(2), *jobs)
    assert first.manifest == [(0, 1), (1, 1)]
    assert first.creates == [CreateReduce(1)]
    assert first.status.phase == "Reducing"
    again = settle(spec, first.status, *jobs, reducer(1, JobState.ACTIVE))
    assert again.creates == []
    assert again.status.phase == "Reducing" and again.status.reduce is not None
    assert again.status.reduce.phase == "Running"


def test_a_succeeded_reduce_step_succeeds_the_run_and_says_where_its_outputs_are() -> None:
    spec = make_spec(reduce=REDUCE)
    status, jobs = mapped(spec)
    done = settle(spec, status, *jobs, reducer(1, JobState.SUCCEEDED))
    assert done.status.phase == "Succeeded"
    assert done.status.reduce is not None
    assert done.status.reduce.output_prefix == "s3://processed/daily/uid-1/reduce/a1/"
    reduced = get_condition(done.status.conditions, ConditionType.REDUCED)
    assert reduced is not None and reduced.status == "True"
    assert [e.reason for e in done.events] == ["Reduced", "Succeeded"]


def test_a_failed_reduce_attempt_is_retried_after_its_backoff_with_a_new_attempt_and_a_warning() -> None:
    spec = make_spec(reduce=REDUCE, retry={"maxAttempts": 2, "intervalSeconds": 5, "jitter": "none"})
    status, jobs = mapped(spec)
    failed = reducer(1, JobState.FAILED, finished=T0 - dt.timedelta(seconds=1))
    waiting = planner.plan(spec, status, observe_all(*jobs, failed))
    assert waiting.creates == [] and waiting.requeue_after == pytest.approx(4)
    due = planner.plan(spec, status, observe_all(*jobs, failed, now=T0 + dt.timedelta(seconds=5)))
    assert due.creates == [CreateReduce(2)]
    assert due.status.reduce is not None and due.status.reduce.attempt == 2
    said = [(e.type, e.message) for e in due.events if e.reason == "ReduceAttemptFailed"]
    assert said == [("Warning", f"reduce Job wf-reduce-a1 failed ({failed.message}); starting attempt 2")]


def test_a_reduce_step_failing_for_good_fails_the_run_with_its_reason_and_keeps_the_manifest() -> None:
    spec = make_spec(reduce=REDUCE, retry={"maxAttempts": 1})
    status, jobs = mapped(spec)
    result = settle(spec, status, *jobs, reducer(1, JobState.FAILED))
    assert result.status.phase == "Failed"
    failed = get_condition(result.status.conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == "ReduceFailed"
    assert "wf-reduce-a1: DeadlineExceeded: too slow" in failed.message
    assert result.status.manifest == status.manifest
    assert result.creates == []


def test_a_map_over_its_failure_tolerance_never_reduces() -> None:
    spec = make_spec(reduce=REDUCE, retry={"maxAttempts": 1})
    result = settle(spec, partitioned(2), part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.FAILED))
    assert result.status.phase == "Failed"
    assert not any(isinstance(x, CreateReduce) for x in result.creates)


def test_failures_within_tolerance_still_reduce_what_succeeded() -> None:
    spec = make_spec(reduce=REDUCE, retry={"maxAttempts": 1}, failureTolerance={"count": 1})
    result = settle(spec, partitioned(2), part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.FAILED))
    assert result.manifest == [(0, 1)]
    assert result.creates == [CreateReduce(1)]


def test_a_suspended_workflow_does_not_start_its_reduce_step() -> None:
    spec = make_spec(reduce=REDUCE, suspend=True)
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    assert settle(spec, partitioned(2), *jobs).creates == []


def test_the_run_wide_copy_waits_for_the_reduce_step_and_carries_its_winning_attempt() -> None:
    spec = make_spec(reduce=REDUCE, replication=AFTER_ALL, retry={"maxAttempts": 3, "intervalSeconds": 0})
    status, jobs = mapped(spec)
    assert status.phase == "Reducing"
    retried = settle(spec, status, *jobs, reducer(1, JobState.FAILED))
    assert retried.creates == [CreateReduce(2)]
    reduced = settle(spec, retried.status, *jobs, reducer(1, JobState.FAILED), reducer(2, JobState.SUCCEEDED))
    assert reduced.creates == [CreateReplication(0, 1, 0, 2)]
    assert reduced.status.phase == "Replicating"


def test_a_redrive_after_a_failed_reduce_step_runs_it_again_from_a_fresh_attempt() -> None:
    spec = make_spec(reduce=REDUCE, retry={"maxAttempts": 2, "intervalSeconds": 0})
    status, jobs = mapped(spec)
    jobs += [reducer(1, JobState.FAILED), reducer(2, JobState.FAILED)]
    failed = settle(spec, status, *jobs)
    assert failed.status.phase == "Failed"
    redriven = settle(spec, failed.status, *jobs, redrive="again")
    assert redriven.creates == [CreateReduce(3)]
    assert redriven.status.phase == "Reducing"
    assert any(e.reason == "Redriven" and "the reduce step" in e.message for e in redriven.events)


def test_a_redrive_of_failed_partitions_reduces_again_over_the_new_manifest() -> None:
    spec = make_spec(reduce=REDUCE, retry={"maxAttempts": 1}, failureTolerance={"count": 1})
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.FAILED)]
    reducing = settle(spec, partitioned(2), *jobs)
    jobs.append(reducer(1, JobState.SUCCEEDED))
    succeeded = settle(spec, reducing.status, *jobs)
    assert succeeded.status.phase == "Succeeded"
    redriven = settle(spec, succeeded.status, *jobs, redrive="again")
    assert redriven.creates == [CreatePartition(1, 2)]
    assert redriven.status.manifest == ""
    assert redriven.status.reduce is not None and redriven.status.reduce.phase == "Pending"
    jobs.append(part(1, 2, JobState.SUCCEEDED))
    rerun = settle(spec, redriven.status, *jobs)
    assert rerun.manifest == [(0, 1), (1, 2)]
    assert rerun.creates == [CreateReduce(2)]


def test_a_reduce_step_with_a_per_partition_copy_is_refused_saying_why() -> None:
    per_partition = {**AFTER_ALL, "mode": "perPartition"}
    with pytest.raises(ValidationError, match=r"replication\.mode must be afterAll"):
        make_spec(reduce=REDUCE, replication=per_partition)
    with pytest.raises(ValidationError, match=r"replication\.mode must be afterAll"):
        make_spec(reduce=REDUCE, replication={"destinations": AFTER_ALL["destinations"]})


def test_a_reduce_success_counts_only_once_its_record_is_read() -> None:
    spec = make_spec(reduce=REDUCE)
    status, jobs = mapped(spec)
    done = reducer(1, JobState.SUCCEEDED)
    assert planner.needs_reduce_record(spec, status, [*jobs, done]) == 1
    unread = planner.plan(spec, status, observe(*jobs, done))
    assert unread.status.phase == "Reducing" and unread.creates == []
    read = settle(spec, status, *jobs, done)
    assert read.status.phase == "Succeeded"
    assert planner.needs_reduce_record(spec, read.status, [*jobs, done]) is None


def test_a_reduce_that_succeeds_without_its_record_is_a_failed_attempt_saying_so() -> None:
    spec = make_spec(reduce=REDUCE, retry={"maxAttempts": 2, "intervalSeconds": 0})
    status, jobs = mapped(spec)
    silent = reducer(1, JobState.SUCCEEDED)
    retried = planner.plan(spec, status, observe_all(*jobs, silent, unrecorded=(1,)))
    assert retried.creates == [CreateReduce(2)]
    again = reducer(2, JobState.SUCCEEDED)
    failed = planner.plan(spec, retried.status, observe_all(*jobs, silent, again, unrecorded=(1, 2)))
    assert failed.status.phase == "Failed"
    condition = get_condition(failed.status.conditions, ConditionType.FAILED)
    assert condition is not None and condition.reason == Reason.REDUCE_NOT_RECORDED
    assert "the Job succeeded but it wrote no record" in condition.message


def test_suspending_after_the_map_holds_the_reduce_step_and_says_so() -> None:
    spec = make_spec(reduce=REDUCE, suspend=True)
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    held = settle(spec, partitioned(2), *jobs)
    assert held.status.phase == "Suspended"
    assert get_condition(held.status.conditions, ConditionType.SUSPENDED) is not None
    running = settle(spec, partitioned(2), *jobs, reducer(1, JobState.ACTIVE))
    assert running.status.phase == "Reducing"  # what already runs is shown, and finishes


def test_a_redrive_that_reruns_the_reduce_step_gives_the_run_wide_copy_a_fresh_round() -> None:
    spec = make_spec(reduce=REDUCE, replication=AFTER_ALL, retry={"maxAttempts": 1})
    status, jobs = mapped(spec)
    jobs.append(reducer(1, JobState.FAILED))
    failed = settle(spec, status, *jobs)
    assert failed.status.phase == "Failed"
    redriven = settle(spec, failed.status, *jobs, redrive="again")
    assert redriven.creates == [CreateReduce(2)]
    reduced = settle(spec, redriven.status, *jobs, reducer(2, JobState.SUCCEEDED))
    assert reduced.creates == [CreateReplication(0, 2, 0, 2)]  # the second round's first attempt


def test_an_operator_killed_after_the_manifest_write_starts_the_same_reduce_attempt_on_restart() -> None:
    spec = make_spec(reduce=REDUCE)
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    before = partitioned(2)
    first = settle(spec, before, *jobs)  # manifest written, then killed: no Job, no status write
    again = settle(spec, before, *jobs)
    assert again.manifest == first.manifest and again.creates == first.creates == [CreateReduce(1)]
    # Killed after the create but before the status write: the Job is found, not duplicated.
    found = settle(spec, before, *jobs, reducer(1, JobState.ACTIVE))
    assert found.creates == [] and found.status.reduce is not None and found.status.reduce.attempt == 1
