"""Jobs held by Kueue are Queued: counted as such, never stalled, blocked or failed for it, and the
run says where they wait and what Kueue says; once admitted, it runs as before."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from paraflow import constants as c
from paraflow.k8s import builders
from paraflow.models import WorkflowStatus
from paraflow.planning import planner, queueing
from paraflow.planning.conditions import get_condition
from paraflow.planning.observed import Admission
from paraflow.planning.planner import JobFacts, JobState, Observed, PlanRead
from paraflow.reasons import ConditionType, Reason
from paraflow.settings import Settings
from tests.unit.builders import T0, make_spec

pytestmark = pytest.mark.unit

LATER = T0 + dt.timedelta(hours=6)
NO_QUEUE = "LocalQueue teem doesn't exist"
QUOTA = "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default"


def partition(p: int, *, queued: bool) -> JobFacts:
    job = JobFacts(f"wf-p{p}-a1", c.ROLE_PARTITION, p, 1, JobState.ACTIVE, created_at=T0)
    return dataclasses.replace(job, queued=queued, stalled=False)


def observe(*jobs: JobFacts, now: dt.datetime = T0, admission: Admission | None = None, plan: bool = False) -> Observed:
    done = JobFacts("wf-part-a1", c.ROLE_PARTITIONER, None, 1, JobState.SUCCEEDED, T0)
    read = PlanRead(partition_count=3) if plan else None
    return Observed(jobs=[done, *jobs], generation=1, now=now, uid="u", plan=read, admission=admission)


def started(spec_overrides: dict[str, object]) -> tuple[object, WorkflowStatus]:
    spec = make_spec(maxConcurrency=3, progressDeadlineSeconds=60, **spec_overrides)
    return spec, planner.plan(spec, WorkflowStatus(), observe(plan=True)).status


def test_queued_partitions_are_counted_apart_and_the_run_says_where_they_wait_and_why() -> None:
    spec, status = started({"queueName": "team-a"})
    result = planner.plan(
        spec, status, observe(partition(0, queued=False), partition(1, queued=True), partition(2, queued=True))
    )
    counts = result.status.partitions
    assert (counts.running, counts.queued, counts.pending) == (1, 2, 0)
    cond = get_condition(result.status.conditions, ConditionType.QUEUED)
    assert cond is not None and cond.reason == Reason.AWAITING_ADMISSION
    assert "2 Job(s) wait for admission in Kueue LocalQueue team-a" in cond.message
    assert result.status.message == "", "something runs: the run's message is not about the queue"
    assert [(e.type, e.reason) for e in result.events] == [("Normal", Reason.AWAITING_ADMISSION)]


def test_a_run_whose_every_job_waits_says_so_with_kueue_s_words_and_never_fails_for_it() -> None:
    spec, status = started({"queueName": "team-a"})
    waiting = [partition(p, queued=True) for p in range(3)]
    first = planner.plan(spec, status, observe(*waiting, admission=Admission(QUOTA)))
    assert first.status.message.endswith(QUOTA) and "LocalQueue team-a" in first.status.message
    later = planner.plan(spec, first.status, observe(*waiting, now=LATER, admission=Admission(QUOTA)))
    assert later.status.phase == "Running", "hours in a queue are no stall: progressDeadlineSeconds is 60"
    assert get_condition(later.status.conditions, ConditionType.PODS_BLOCKED) is None
    assert later.deletes == [] and later.events == []

    admitted = planner.plan(spec, later.status, observe(*[partition(p, queued=False) for p in range(3)], now=LATER))
    assert get_condition(admitted.status.conditions, ConditionType.QUEUED) is None
    assert admitted.status.message == "" and admitted.status.partitions.running == 3


def test_jobs_held_without_a_queue_name_warn_that_spec_queue_name_is_missing() -> None:
    spec, status = started({})
    result = planner.plan(spec, status, observe(*[partition(p, queued=True) for p in range(3)]))
    cond = get_condition(result.status.conditions, ConditionType.QUEUED)
    assert cond is not None and cond.reason == Reason.SUSPENDED_WITHOUT_QUEUE
    assert "spec.queueName is not set" in result.status.message
    assert ("Warning", Reason.SUSPENDED_WITHOUT_QUEUE) in [(e.type, e.reason) for e in result.events]
    never = planner.plan(
        spec, status, observe(*[partition(p, queued=True) for p in range(3)], admission=Admission(NO_QUEUE, stuck=True))
    )
    assert never.status.phase == "Blocked" and "spec.queueName is not set" in never.status.message


def test_a_failed_run_deletes_its_queued_jobs_instead_of_waiting_for_their_admission() -> None:
    spec, status = started({"queueName": "team-a"})
    failed = dataclasses.replace(
        partition(0, queued=False), state=JobState.FAILED, finished_at=T0, retryable=False, message="exit 3"
    )
    result = planner.plan(spec, status, observe(failed, partition(1, queued=True), partition(2, queued=True)))
    assert result.status.phase == "Failed"
    assert sorted(result.deletes) == ["wf-p1-a1", "wf-p2-a1"]
    assert get_condition(result.status.conditions, ConditionType.QUEUED) is None


def test_a_job_kueue_suspended_is_queued_not_stalled_and_every_job_carries_the_queue_labels() -> None:
    spec = make_spec(queueName="team-a", queuePriorityClass="nightly", reduce={"image": "r:1"})
    wf = builders.WorkflowRef("wf", "ns", "u")
    settings = Settings(worker_image="w:1", identity="t")
    jobs = [
        builders.partitioner_job(wf, spec, 1, settings=settings),
        builders.partition_job(wf, spec, 0, attempt=1, settings=settings),
        builders.reduce_job(wf, spec, 1, settings=settings),
    ]
    with_copy = make_spec(queueName="team-a", replication={"destinations": [{"name": "d", "bucket": "replica"}]})
    jobs.append(builders.replication_job(wf, with_copy, 0, attempt=1, winner=1, settings=settings))
    for job in jobs:
        assert job["metadata"]["labels"][c.LABEL_KUEUE_QUEUE] == "team-a"
        assert c.LABEL_KUEUE_QUEUE not in job["spec"]["template"]["metadata"]["labels"], "pods are not Workloads"
    assert jobs[1]["metadata"]["labels"][c.LABEL_KUEUE_PRIORITY] == "nightly"
    suspended = {
        **jobs[1],
        "metadata": {**jobs[1]["metadata"], "uid": "x"},
        "spec": {**jobs[1]["spec"], "suspend": True},
    }
    facts = builders.job_facts(suspended)
    assert facts is not None and facts.queued and not facts.stalled


def test_kueue_s_words_are_why_the_quota_is_not_reserved_or_why_the_job_was_evicted() -> None:
    def workload(*conditions: dict[str, str]) -> dict[str, object]:
        return {"status": {"conditions": list(conditions)}}

    no_quota = {"type": "QuotaReserved", "status": "False", "message": QUOTA}
    evicted = {
        "type": "Evicted",
        "status": "True",
        "reason": "Preempted",
        "message": "Preempted to accommodate a higher priority Workload",
    }
    assert queueing.admission([workload(no_quota)]) == Admission(QUOTA)
    assert queueing.admission([workload(no_quota, evicted)]) == Admission(
        "evicted (Preempted): Preempted to accommodate a higher priority Workload"
    )
    missing = {"type": "QuotaReserved", "status": "False", "reason": "Inadmissible", "message": NO_QUEUE}
    assert queueing.admission([workload(missing)]) == Admission(NO_QUEUE, stuck=True)
    admitted = {"type": "QuotaReserved", "status": "True", "message": "Quota reserved in ClusterQueue cq"}
    assert queueing.admission([workload(admitted)]) is None, "admitted: nothing to explain, it starts"
    assert queueing.admission([]) is None


def test_jobs_kueue_cannot_admit_block_the_run_saying_why_and_fail_it_at_its_progress_deadline() -> None:
    spec, status = started({"queueName": "teem"})
    waiting = [partition(p, queued=True) for p in range(3)]
    blocked = planner.plan(spec, status, observe(*waiting, admission=Admission(NO_QUEUE, stuck=True)))
    assert blocked.status.phase == "Blocked" and NO_QUEUE in blocked.status.message
    cond = get_condition(blocked.status.conditions, ConditionType.QUEUED)
    assert cond is not None and cond.reason == Reason.QUEUE_INADMISSIBLE
    assert ("Warning", Reason.QUEUE_INADMISSIBLE) in [(e.type, e.reason) for e in blocked.events]
    later = planner.plan(spec, blocked.status, observe(*waiting, now=LATER, admission=Admission(NO_QUEUE, stuck=True)))
    assert later.status.phase == "Failed", "waiting for a queue that cannot admit is no progress"
    failed = get_condition(later.status.conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == Reason.PROGRESS_DEADLINE_EXCEEDED and NO_QUEUE in failed.message
    assert sorted(later.deletes) == ["wf-p0-a1", "wf-p1-a1", "wf-p2-a1"]
