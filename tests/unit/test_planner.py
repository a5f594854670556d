"""The pure planner: what one reconcile pass decides from what it observed."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow import constants as c
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.planner import (
    CreatePartition,
    CreatePartitioner,
    JobFacts,
    JobState,
    Observed,
    PlanRead,
)
from paraflow.reasons import ConditionType
from tests.unit.builders import T0, make_spec

pytestmark = pytest.mark.unit


def partitioner(state: JobState, attempt: int = 1) -> JobFacts:
    return JobFacts(f"wf-part-a{attempt}", c.ROLE_PARTITIONER, None, attempt, state, T0, "BackoffLimitExceeded")


def part(p: int, a: int, state: JobState, finished: dt.datetime | None = T0) -> JobFacts:
    return JobFacts(f"wf-p{p}-a{a}", c.ROLE_PARTITION, p, a, state, finished if state is not JobState.ACTIVE else None)


def observe(*jobs: JobFacts, now: dt.datetime = T0, plan: PlanRead | None = None, redrive: str = "") -> Observed:
    return Observed(jobs=list(jobs), generation=1, now=now, uid="uid-1", redrive_token=redrive, plan=plan)


def partitioned(total: int) -> WorkflowStatus:
    """Status right after the plan of ``total`` partitions was read."""
    result = planner.plan(
        make_spec(), WorkflowStatus(), observe(partitioner(JobState.SUCCEEDED), plan=PlanRead(partition_count=total))
    )
    return result.status


def test_a_new_workflow_starts_its_partitioner_and_nothing_else() -> None:
    result = planner.plan(make_spec(), WorkflowStatus(), observe())
    assert result.creates == [CreatePartitioner()]
    assert result.status.phase == "Partitioning"


def test_a_read_plan_fans_out_lowest_indexes_first_up_to_max_concurrency() -> None:
    spec = make_spec(maxConcurrency=3)
    result = planner.plan(
        spec, WorkflowStatus(), observe(partitioner(JobState.SUCCEEDED), plan=PlanRead(partition_count=10))
    )
    assert result.creates == [CreatePartition(0, 1), CreatePartition(1, 1), CreatePartition(2, 1)]
    assert result.status.partitions.model_dump() == {
        "total": 10,
        "pending": 7,
        "queued": 0,
        "running": 3,
        "succeeded": 0,
        "failed": 0,
        "notRun": 0,
    }
    assert result.status.phase == "Running"


def test_running_jobs_use_up_the_concurrency_and_finished_ones_free_it() -> None:
    spec = make_spec(maxConcurrency=2)
    status = partitioned(5)
    busy = planner.plan(spec, status, observe(part(0, 1, JobState.ACTIVE), part(1, 1, JobState.ACTIVE)))
    assert busy.creates == []
    freed = planner.plan(spec, status, observe(part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.ACTIVE)))
    assert freed.creates == [CreatePartition(2, 1)]
    assert freed.status.succeeded_indexes == "0"


def test_lowering_max_concurrency_lets_running_jobs_finish_and_starts_nothing() -> None:
    status = partitioned(10)
    jobs = [part(i, 1, JobState.ACTIVE) for i in range(5)]
    result = planner.plan(make_spec(maxConcurrency=2), status, observe(*jobs))
    assert result.creates == []
    assert result.status.partitions.running == 5


def test_a_failed_attempt_is_retried_only_after_its_backoff() -> None:
    spec = make_spec(**{"retry.jitter": "none", "retry.intervalSeconds": 10})
    status = partitioned(1)
    failed = part(0, 1, JobState.FAILED, finished=T0)
    early = planner.plan(spec, status, observe(failed, now=T0 + dt.timedelta(seconds=9)))
    assert early.creates == []
    assert early.requeue_after is not None and 0 < early.requeue_after <= 1
    due = planner.plan(spec, status, observe(failed, now=T0 + dt.timedelta(seconds=10)))
    assert due.creates == [CreatePartition(0, 2)]
    assert due.status.attempts == {"2": "0"}


def test_exhausted_attempts_fail_the_workflow_when_nothing_is_tolerated() -> None:
    spec = make_spec(**{"retry.maxAttempts": 2})
    status = partitioned(3)
    result = planner.plan(spec, status, observe(part(0, 2, JobState.FAILED), part(1, 1, JobState.ACTIVE)))
    assert result.status.phase == "Failed"
    assert result.status.failed_indexes == "0"
    assert result.creates == []  # no new partitions once the tolerance is exceeded
    failed = next(cnd for cnd in result.status.conditions if cnd.type == ConditionType.FAILED)
    assert failed.reason == "FailureToleranceExceeded"
    assert {e.reason for e in result.events} >= {"PartitionsFailed", "Failed"}
    # Partition 2 never started: not "pending" on a run that will start nothing more.
    assert (result.status.partitions.pending, result.status.partitions.not_run) == (0, 1)


def test_a_non_retryable_failure_is_named_as_such_and_not_retried() -> None:
    status = partitioned(2)
    final = dataclasses.replace(part(0, 1, JobState.FAILED), retryable=False)
    result = planner.plan(make_spec(), status, observe(final, part(1, 1, JobState.SUCCEEDED)))
    said = [e.message for e in result.events if e.reason == "PartitionsFailed"]
    assert said == [
        "partition(s) 0 failed with a non-retryable exit code (processor.nonRetryableExitCodes): not retried"
    ]
    assert result.creates == [] and result.status.failed_indexes == "0"


def test_failures_within_the_tolerated_count_still_succeed_with_a_manifest() -> None:
    spec = make_spec(**{"retry.maxAttempts": 1, "failureTolerance.count": 1})
    status = partitioned(3)
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.FAILED), part(2, 1, JobState.SUCCEEDED)]
    result = planner.plan(spec, status, observe(*jobs))
    assert result.status.phase == "Succeeded"
    assert result.manifest == [(0, 1), (2, 1)]
    assert "1 failed within tolerance" in result.status.message


def test_exceeding_either_tolerance_fails_like_step_functions() -> None:
    spec = make_spec(**{"retry.maxAttempts": 1, "failureTolerance.count": 5, "failureTolerance.percentage": 10})
    status = partitioned(10)
    jobs = [part(0, 1, JobState.FAILED), part(1, 1, JobState.FAILED)]  # 2 <= 5, but 20% > 10%
    assert planner.plan(spec, status, observe(*jobs)).status.phase == "Failed"


def test_the_manifest_names_the_winning_attempt_of_each_partition() -> None:
    status = partitioned(2)
    jobs = [part(0, 1, JobState.FAILED), part(0, 2, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    result = planner.plan(make_spec(), status, observe(*jobs))
    assert result.manifest == [(0, 2), (1, 1)]


def test_a_succeeded_partition_whose_job_was_deleted_is_not_run_again() -> None:
    status = partitioned(2)
    after_success = planner.plan(
        make_spec(), status, observe(part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.ACTIVE))
    )
    result = planner.plan(make_spec(), after_success.status, observe(part(1, 1, JobState.ACTIVE)))
    assert result.creates == []
    assert result.status.succeeded_indexes == "0"


def test_a_running_job_deleted_by_hand_is_recreated_under_the_same_name() -> None:
    status = partitioned(1)
    running = planner.plan(make_spec(), status, observe(part(0, 1, JobState.ACTIVE))).status
    assert planner.plan(make_spec(), running, observe()).creates == [CreatePartition(0, 1)]


def test_redrive_reruns_only_the_failed_partitions() -> None:
    spec = make_spec(**{"retry.maxAttempts": 1, "failureTolerance.count": 1})
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.FAILED), part(2, 1, JobState.SUCCEEDED)]
    done = planner.plan(spec, partitioned(3), observe(*jobs)).status
    assert done.phase == "Succeeded"
    redriven = planner.plan(spec, done, observe(*jobs, redrive="r1"))
    assert redriven.creates == [CreatePartition(1, 2)]
    assert redriven.status.phase == "Running"
    assert redriven.status.redrive.count == 1
    again = planner.plan(spec, redriven.status, observe(*jobs, part(1, 2, JobState.SUCCEEDED), redrive="r1"))
    assert again.creates == []  # the same token is not a second redrive
    assert again.status.phase == "Succeeded"
    assert again.manifest == [(0, 1), (1, 2), (2, 1)]


def test_suspend_starts_nothing_new() -> None:
    result = planner.plan(make_spec(suspend=True), partitioned(4), observe(part(0, 1, JobState.ACTIVE)))
    assert result.creates == []
    assert result.status.phase == "Suspended"
    assert any(cnd.type == ConditionType.SUSPENDED for cnd in result.status.conditions)


def test_a_failed_partitioner_fails_the_workflow_with_its_reason() -> None:
    result = planner.plan(make_spec(), WorkflowStatus(), observe(partitioner(JobState.FAILED)))
    assert result.status.phase == "Failed"
    assert "BackoffLimitExceeded" in result.status.message


def test_an_unreadable_plan_fails_the_workflow_with_the_readers_reason() -> None:
    bad = PlanRead(error_reason="InvalidPlan", error_message="s3://b/k is not a valid plan: partitionCount: missing")
    result = planner.plan(make_spec(), WorkflowStatus(), observe(partitioner(JobState.SUCCEEDED), plan=bad))
    assert result.status.phase == "Failed"
    assert result.status.conditions[-1].reason == "InvalidPlan"


def test_an_empty_input_fails_with_no_partitions() -> None:
    result = planner.plan(
        make_spec(), WorkflowStatus(), observe(partitioner(JobState.SUCCEEDED), plan=PlanRead(partition_count=0))
    )
    assert result.status.conditions[-1].reason == "NoPartitions"
    assert "s3://raw-logs/2026/11/24/" in result.status.message


def test_needs_plan_only_after_the_partitioner_succeeded_and_once() -> None:
    assert not planner.needs_plan(WorkflowStatus(), [partitioner(JobState.ACTIVE)])
    assert planner.needs_plan(WorkflowStatus(), [partitioner(JobState.SUCCEEDED)])
    assert not planner.needs_plan(partitioned(3), [partitioner(JobState.SUCCEEDED)])


def test_status_stays_small_at_100000_partitions_finishing_in_order() -> None:
    status = partitioned(100_000)
    jobs = [part(i, 1, JobState.SUCCEEDED) for i in range(0, 60_000)]
    jobs += [part(i, 1, JobState.ACTIVE) for i in range(60_000, 60_500)]
    result = planner.plan(make_spec(maxConcurrency=500), status, observe(*jobs))
    size = len(result.status.model_dump_json(by_alias=True, exclude_none=True))
    assert size < 8 * 1024
    assert result.status.partitions.succeeded == 60_000


@given(st.text(max_size=3000))
def test_an_event_message_fits_what_the_apiserver_accepts_and_keeps_its_start(message: str) -> None:
    bounded = planner.Event("Warning", "ReplicationFailed", message).bounded_message()
    assert len(bounded.encode()) <= planner.EVENT_MESSAGE_MAX_BYTES
    if len(message.encode()) <= planner.EVENT_MESSAGE_MAX_BYTES:
        assert bounded == message
    else:
        assert bounded.endswith("…") and message.startswith(bounded[:-1])


def test_a_finished_run_deletes_its_succeeded_jobs_a_hundred_per_pass_oldest_first() -> None:
    spec = make_spec(succeededJobs="Delete")
    jobs = [partitioner(JobState.SUCCEEDED)]
    jobs += [part(p, 1, JobState.SUCCEEDED, T0 + dt.timedelta(seconds=250 - p)) for p in range(250)]
    status = planner.plan(spec, partitioned(250), observe(*jobs)).status
    assert status.phase == "Succeeded"
    result = planner.plan(spec, status, observe(*jobs))
    assert result.deletes == [f"wf-p{p}-a1" for p in range(249, 149, -1)], "the oldest hundred (p249 ended first)"
    assert result.requeue_after is not None and result.requeue_after <= 1.0, "the rest follow soon"
    assert planner.deletable(spec, status, jobs)[:100] == result.deletes, "the idle path deletes the same ones"


def test_a_redrive_of_a_run_that_never_finished_a_partition_writes_a_new_manifest() -> None:
    """A run that failed with partition 1 neither succeeded nor failed (stopped at the progress
    deadline): its manifest lists partition 0 only. The redrive runs partition 1, so the manifest
    must be written again, not kept."""
    status = partitioned(2)
    status.phase, status.completion_time = "Failed", T0
    status.succeeded_indexes, status.running_indexes = "0", ""
    status.partitions.succeeded, status.partitions.running, status.partitions.pending = 1, 0, 1
    status.manifest = "s3://out/_paraflow/uid-1/manifest.json"
    redriven = planner.plan(
        make_spec(), status, observe(partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED), redrive="r1")
    )
    assert redriven.status.manifest == ""
    assert [x.index for x in redriven.creates if isinstance(x, CreatePartition)] == [1]


def test_a_finished_status_that_still_names_running_partitions_gets_one_more_pass() -> None:
    status = partitioned(1)
    status.phase, status.manifest = "Failed", "s3://out/_paraflow/uid-1/manifest.json"
    status.running_indexes = "0"  # the Job stopped and deleted since the last pass
    assert not planner.settled(make_spec(), status, [], redrive_token="", logs_kept=None)
    status.running_indexes = ""
    assert planner.settled(make_spec(), status, [], redrive_token="", logs_kept=None)
