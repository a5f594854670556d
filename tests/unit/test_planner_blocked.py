"""Pods that cannot be created or scheduled: the planner shows the run as Blocked, says why, and
lets it go back to its phase by itself once the cause is gone (decided from what the reconciler
observed: the Jobs' ages and, when it asked, why one stalls)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from paraflow import constants as c
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.conditions import get_condition, set_condition
from paraflow.planning.planner import CreatePartition, JobFacts, JobState, Observed, PlanRead
from paraflow.planning.stalls import Stall
from paraflow.reasons import ConditionType
from tests.unit.builders import T0, make_spec
from tests.unit.world import World

pytestmark = pytest.mark.unit

REFUSED = Stall("wf-p0-a1", "FailedCreate", 'pods "wf-p0-a1-x" is forbidden: violates PodSecurity "restricted"')


def partition_job(p: int, *, stalled_for: float | None, state: JobState = JobState.ACTIVE) -> JobFacts:
    job = JobFacts(f"wf-p{p}-a1", c.ROLE_PARTITION, p, 1, state, None if state is JobState.ACTIVE else T0)
    if stalled_for is None:
        return job
    return dataclasses.replace(job, stalled=True, created_at=T0 - dt.timedelta(seconds=stalled_for))


def observe(*jobs: JobFacts, stall: Stall | None = None, plan: PlanRead | None = None) -> Observed:
    done = JobFacts("wf-part-a1", c.ROLE_PARTITIONER, None, 1, JobState.SUCCEEDED, T0)
    return Observed(jobs=[done, *jobs], generation=1, now=T0, uid="u", plan=plan, stall_seconds=8, stall=stall)


def running(total: int) -> WorkflowStatus:
    return planner.plan(make_spec(), WorkflowStatus(), observe(plan=PlanRead(partition_count=total))).status


def test_a_run_whose_pods_are_refused_is_blocked_with_the_reason_in_its_message_and_a_warning() -> None:
    result = planner.plan(make_spec(), running(1), observe(partition_job(0, stalled_for=30), stall=REFUSED))
    assert result.status.phase == "Blocked"
    assert result.status.message == REFUSED.line()
    cond = get_condition(result.status.conditions, ConditionType.PODS_BLOCKED)
    assert cond is not None and cond.reason == "FailedCreate" and cond.message == REFUSED.line()
    warned = {(e.type, e.reason) for e in result.events}
    assert {("Warning", "FailedCreate"), ("Warning", "Blocked")} <= warned


def test_a_blocked_run_stays_blocked_between_questions_and_is_not_warned_about_again() -> None:
    blocked = planner.plan(make_spec(), running(1), observe(partition_job(0, stalled_for=30), stall=REFUSED))
    again = planner.plan(make_spec(), blocked.status, observe(partition_job(0, stalled_for=31)))
    assert again.status.phase == "Blocked" and again.status.message == REFUSED.line()
    assert again.events == []


def test_a_blocked_run_goes_back_to_running_by_itself_once_its_pods_run() -> None:
    blocked = planner.plan(make_spec(), running(2), observe(partition_job(0, stalled_for=30), stall=REFUSED))
    healed = planner.plan(make_spec(), blocked.status, observe(partition_job(0, stalled_for=None)))
    assert healed.status.phase == "Running"
    assert healed.status.message == ""
    assert get_condition(healed.status.conditions, ConditionType.PODS_BLOCKED) is None
    assert ("Normal", "Running") in {(e.type, e.reason) for e in healed.events}


def test_a_child_stalled_for_less_than_stall_seconds_blocks_nothing_and_the_pass_comes_back_when_it_is_due() -> None:
    result = planner.plan(make_spec(), running(1), observe(partition_job(0, stalled_for=3), stall=REFUSED))
    assert result.status.phase == "Running"
    assert get_condition(result.status.conditions, ConditionType.PODS_BLOCKED) is None
    assert result.requeue_after == pytest.approx(5)


def test_a_stalled_child_without_a_known_cause_keeps_the_run_running() -> None:
    result = planner.plan(make_spec(), running(1), observe(partition_job(0, stalled_for=30)))
    assert result.status.phase == "Running"


def test_a_suspended_or_finished_run_keeps_its_phase_while_a_child_is_blocked() -> None:
    suspended = planner.plan(
        make_spec(suspend=True), running(2), observe(partition_job(0, stalled_for=30), stall=REFUSED)
    )
    assert suspended.status.phase == "Suspended"
    failed = running(2)
    failed.phase = "Failed"
    failed.conditions = set_condition(
        failed.conditions, ConditionType.FAILED, reason="X", message="m", generation=1, now=T0
    )
    after = planner.plan(make_spec(), failed, observe(partition_job(0, stalled_for=30), stall=REFUSED))
    assert after.status.phase == "Failed"


def test_a_pass_that_reached_the_planner_is_no_longer_blocked_on_storage_and_drops_that_message() -> None:
    status = running(1)
    status.phase, status.message = "Blocked", "MinIO at http://x:9000 unreachable; retrying"
    status.conditions = set_condition(
        status.conditions, ConditionType.BLOCKED, reason="StorageUnavailable", message="m", generation=1, now=T0
    )
    result = planner.plan(make_spec(), status, observe(partition_job(0, stalled_for=None)))
    assert result.status.phase == "Running" and result.status.message == ""
    assert get_condition(result.status.conditions, ConditionType.BLOCKED) is None


def partitions_wait(action: object) -> JobState:
    """The partitioner runs; every partition's Job stays active."""
    return JobState.ACTIVE if isinstance(action, CreatePartition) else JobState.SUCCEEDED


def test_a_run_whose_pods_never_run_fails_at_its_progress_deadline_keeping_its_manifest_and_redrive_reruns_it() -> None:
    """Partition 0 succeeds; partition 1's pods are refused and never run."""

    def outcome(action: object) -> JobState:
        return JobState.ACTIVE if isinstance(action, CreatePartition) and action.index == 1 else JobState.SUCCEEDED

    world = World(make_spec(progressDeadlineSeconds=60, maxConcurrency=2), partitions=2, outcome=outcome)
    world.step()  # the partitioner
    world.step()  # both partitions
    world.jobs["wf-p1-a1"] = dataclasses.replace(world.jobs["wf-p1-a1"], stalled=True)
    world.step()  # records partition 0's success: progress
    world.step()
    assert world.status.phase == "Running" and world.status.no_progress_since is not None
    status = world.run(passes=100, seconds=5)
    assert status.phase == "Failed", status
    failed = get_condition(status.conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == "ProgressDeadlineExceeded"
    assert "no progress for 60s" in failed.message
    assert "wf-p1-a1" not in world.jobs, "the stuck Job is deleted"
    assert status.manifest, "the manifest indexes what succeeded"
    assert status.succeeded_indexes == "0"

    world.outcome = lambda _: JobState.SUCCEEDED
    world.redrive("after-fix")
    assert world.run().phase == "Succeeded", world.status


def test_a_long_partition_with_a_pod_running_is_progress_however_long_it_takes() -> None:
    world = World(make_spec(progressDeadlineSeconds=60), partitions=1, outcome=partitions_wait)
    for _ in range(100):
        world.step(seconds=10)
    assert world.status.phase == "Running" and world.status.no_progress_since is None


def test_a_suspended_run_waits_without_a_deadline() -> None:
    world = World(make_spec(progressDeadlineSeconds=60), partitions=2, outcome=partitions_wait)
    world.step()
    world.step()
    world.edit(suspend=True)
    for job in list(world.jobs.values()):
        if job.state is JobState.ACTIVE:  # only an active Job waits for a pod
            world.jobs[job.name] = dataclasses.replace(job, stalled=True)
    for _ in range(50):
        world.step(seconds=10)
    assert world.status.phase == "Suspended"


def test_one_child_waiting_among_running_ones_keeps_the_run_running_with_its_condition() -> None:
    """A busy cluster or a scale-up: one wave's Job waits while the others run."""
    status = running(3)
    jobs = [partition_job(0, stalled_for=None), partition_job(1, stalled_for=None), partition_job(2, stalled_for=30)]
    unschedulable = Stall("wf-p2-a1", "Unschedulable", "0/3 nodes are available")
    result = planner.plan(make_spec(maxConcurrency=3), status, observe(*jobs, stall=unschedulable))
    assert result.status.phase == "Running"
    assert get_condition(result.status.conditions, ConditionType.PODS_BLOCKED) is not None
    assert "Blocked" not in {e.reason for e in result.events}


def test_a_cause_that_healed_is_cleared_once_its_job_is_asked_about_again() -> None:
    """A quota refusal fixed, then a slow image pull: the Job still waits, with no cause now."""
    blocked = planner.plan(make_spec(), running(1), observe(partition_job(0, stalled_for=30), stall=REFUSED))
    asked = dataclasses.replace(observe(partition_job(0, stalled_for=300)), stall_asked=("wf-p0-a1",))
    healed = planner.plan(make_spec(), blocked.status, asked)
    assert get_condition(healed.status.conditions, ConditionType.PODS_BLOCKED) is None
    assert healed.status.phase == "Running" and healed.status.message == ""


def test_the_same_cause_found_on_another_job_writes_nothing_new() -> None:
    jobs = [partition_job(0, stalled_for=30), partition_job(1, stalled_for=30)]
    first = planner.plan(make_spec(maxConcurrency=2), running(2), observe(*jobs, stall=REFUSED))
    other = Stall("wf-p1-a1", REFUSED.reason, REFUSED.message.replace("wf-p0", "wf-p1"))
    again = planner.plan(make_spec(maxConcurrency=2), first.status, observe(*jobs, stall=other))
    assert again.status == first.status and again.events == []


def test_a_failed_run_deletes_its_children_that_never_got_a_pod_so_it_settles_with_a_manifest() -> None:
    """Tolerance breached by partition 0 while partition 1's Job never gets a pod."""

    def outcome(action: object) -> JobState:
        if isinstance(action, CreatePartition):
            return JobState.FAILED if action.index == 0 else JobState.ACTIVE
        return JobState.SUCCEEDED

    world = World(make_spec(maxConcurrency=2, **{"retry.maxAttempts": 1}), partitions=2, outcome=outcome)
    world.step()
    world.step()
    world.jobs["wf-p1-a1"] = dataclasses.replace(world.jobs["wf-p1-a1"], stalled=True)
    status = world.run(passes=50, seconds=5)
    assert status.phase == "Failed" and status.manifest, status
    assert "wf-p1-a1" not in world.jobs
    assert (status.partitions.failed, status.partitions.not_run, status.partitions.pending) == (1, 1, 0)
    assert planner.settled(world.spec, status, list(world.jobs.values()), redrive_token="", logs_kept=world.logs_kept)
