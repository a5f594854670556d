"""``plan(spec, status, observed) -> Plan``: the whole decision of one reconcile pass.

Level-triggered: the plan depends only on the spec, the last status written, and what the
cluster and MinIO hold now (``Observed``). Re-running it after a crash recomputes the same
decisions, and every action it asks for is idempotent (deterministic names; a create that
finds the object already there is a no-op).

The durable record of a partition's fate is its Job (kept until the workflow is deleted or its
TTL expires) and, once written, the range-compressed sets in status. The union of both is used,
so a Job deleted by hand after its success was recorded does not make the partition run again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from paraflow import constants as c
from paraflow.models import Phase, WorkflowSpec, WorkflowStatus
from paraflow.planning import indexsets
from paraflow.planning.conditions import get_condition, remove_condition, set_condition
from paraflow.planning.retry import delay_seconds

TERMINAL: frozenset[Phase] = frozenset({"Succeeded", "Failed"})


class JobState(Enum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobFacts:
    """What the planner needs to know of one child Job (extracted by the k8s adapter)."""

    name: str
    role: str
    partition: int | None
    attempt: int
    state: JobState
    finished_at: dt.datetime | None = None
    message: str = ""


@dataclass(frozen=True)
class PlanRead:
    """The outcome of reading the partitioner's plan.json: a count, or why it is unusable."""

    partition_count: int | None = None
    error_reason: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class Observed:
    jobs: Sequence[JobFacts]
    generation: int
    now: dt.datetime
    uid: str
    redrive_token: str = ""
    plan: PlanRead | None = None


@dataclass(frozen=True)
class CreatePartitioner:
    pass


@dataclass(frozen=True)
class CreatePartition:
    index: int
    attempt: int


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    status: WorkflowStatus
    creates: list[CreatePartitioner | CreatePartition] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Set when the workflow just finished: (index, winning attempt) of each succeeded partition.
    manifest: list[tuple[int, int]] | None = None
    requeue_after: float | None = None


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def needs_plan(status: WorkflowStatus, jobs: Sequence[JobFacts]) -> bool:
    """True when the partitioner succeeded and its plan has not been read into status yet."""
    if get_condition(status.conditions, c.COND_PARTITIONED) is not None:
        return False
    return any(j.role == c.ROLE_PARTITIONER and j.state is JobState.SUCCEEDED for j in jobs)


def plan(spec: WorkflowSpec, status: WorkflowStatus, obs: Observed) -> Plan:
    new = status.model_copy(deep=True)
    now = timestamp(obs.now)
    new.observed_generation = obs.generation
    new.start_time = new.start_time or now
    out = Plan(status=new)
    _redrive(out, obs, now)
    if get_condition(new.conditions, c.COND_PARTITIONED) is None:
        _partition_stage(out, spec, obs, now)
        if get_condition(new.conditions, c.COND_PARTITIONED) is None:
            return _finish(out, status, obs, now)
    _fan_out(out, spec, obs, now)
    return _finish(out, status, obs, now)


def _redrive(out: Plan, obs: Observed, now: str) -> None:
    st = out.status
    if not obs.redrive_token or obs.redrive_token == st.redrive.last_token:
        return
    st.redrive.last_token = obs.redrive_token
    if st.phase not in TERMINAL or (not st.failed_indexes and st.phase == "Succeeded"):
        out.events.append(
            Event(
                "Normal",
                "RedriveIgnored",
                f"redrive {obs.redrive_token!r} ignored: nothing failed to re-run in phase {st.phase}",
            )
        )
        return
    if get_condition(st.conditions, c.COND_PARTITIONED) is None:
        # The partitioner itself failed: a redrive runs it again from scratch.
        out.events.append(Event("Normal", "Redriven", "re-running the partitioner"))
        st.redrive.count += 1
        st.phase, st.completion_time, st.message = "Pending", None, ""
        st.conditions = remove_condition(st.conditions, c.COND_FAILED)
        return
    failed = st.failed_indexes
    st.redrive.count += 1
    st.failed_indexes = ""
    st.phase, st.completion_time, st.message = "Running", None, ""
    st.conditions = remove_condition(remove_condition(st.conditions, c.COND_FAILED), c.COND_SUCCEEDED)
    out.events.append(
        Event(
            "Normal",
            "Redriven",
            f"redrive #{st.redrive.count}: re-running failed partitions {failed or '(none)'} and any never started",
        )
    )


def _partition_stage(out: Plan, spec: WorkflowSpec, obs: Observed, now: str) -> None:
    st = out.status
    jobs = [j for j in obs.jobs if j.role == c.ROLE_PARTITIONER]
    # After a redrive of a failed partitioner, only a newer attempt counts.
    current = max(jobs, key=lambda j: j.attempt, default=None)
    wanted_attempt = st.redrive.count + 1
    if obs.plan is not None and current is not None and current.state is JobState.SUCCEEDED:
        if obs.plan.partition_count is None:
            _fail(out, obs.plan.error_reason, obs.plan.error_message, now)
            return
        if obs.plan.partition_count == 0:
            _fail(
                out,
                "NoPartitions",
                f"the partitioner found no input items under s3://{spec.input.bucket}/{spec.input.prefix}",
                now,
            )
            return
        st.partitions.total = obs.plan.partition_count
        st.conditions = set_condition(
            st.conditions,
            c.COND_PARTITIONED,
            "True",
            "PlanRead",
            f"{obs.plan.partition_count} partitions",
            obs.generation,
            now,
        )
        out.events.append(Event("Normal", "Partitioned", f"plan has {obs.plan.partition_count} partitions"))
        return
    if st.phase == "Failed":
        return
    if current is None or current.attempt < wanted_attempt:
        if spec.suspend:
            st.phase = "Suspended"
            return
        out.creates.append(CreatePartitioner())
        st.phase = "Partitioning"
    elif current.state is JobState.FAILED:
        _fail(out, "PartitionerFailed", f"partitioner Job {current.name} failed: {current.message}", now)
    else:
        st.phase = "Partitioning"


def _fail(out: Plan, reason: str, message: str, now: str) -> None:
    st = out.status
    st.phase, st.message = "Failed", message
    st.conditions = set_condition(st.conditions, c.COND_FAILED, "True", reason, message, st.observed_generation, now)


def _fan_out(out: Plan, spec: WorkflowSpec, obs: Observed, now: str) -> None:
    st = out.status
    total = st.partitions.total
    latest: dict[int, int] = {}
    for attempt_text, ranges in st.attempts.items():
        for p in indexsets.expand(ranges):
            latest[p] = int(attempt_text)
    by_attempt: dict[tuple[int, int], JobFacts] = {}
    for j in obs.jobs:
        if j.role != c.ROLE_PARTITION or j.partition is None or j.partition >= total:
            continue
        by_attempt[(j.partition, j.attempt)] = j
        latest[j.partition] = max(latest.get(j.partition, 1), j.attempt)

    succeeded = indexsets.expand(st.succeeded_indexes)
    succeeded.update(p for (p, a), j in by_attempt.items() if j.state is JobState.SUCCEEDED)
    recorded_failed = indexsets.expand(st.failed_indexes) - succeeded
    budget = spec.retry.max_attempts * (st.redrive.count + 1)

    active: set[int] = set()
    final_failed: set[int] = set(recorded_failed)
    due: list[int] = []
    waiting: dict[int, float] = {}
    for p, a in latest.items():
        if p in succeeded or p in recorded_failed:
            continue
        job = by_attempt.get((p, a))
        if job is None:
            continue  # never created, or deleted by hand: pending, (re)created below
        if job.state is JobState.ACTIVE:
            active.add(p)
        elif job.state is JobState.FAILED:
            if a >= budget:
                final_failed.add(p)
                continue
            finished = job.finished_at or obs.now
            wait = delay_seconds(spec.retry, a, f"{obs.uid}/{p}") - (obs.now - finished).total_seconds()
            # A partition that had used up the previous budget is here because of a redrive: now.
            redriven = st.redrive.count > 0 and a >= spec.retry.max_attempts * st.redrive.count
            if wait <= 0 or redriven:
                due.append(p)
            else:
                waiting[p] = wait

    newly_failed = final_failed - recorded_failed
    if newly_failed:
        out.events.append(
            Event(
                "Warning",
                "PartitionsFailed",
                f"partition(s) {indexsets.compress(newly_failed)} failed after their last attempt",
            )
        )
    breached = _breached(spec, len(final_failed), total)
    can_start = not breached and not spec.suspend and st.phase != "Failed"
    if can_start:
        slots = max(0, spec.max_concurrency - len(active))
        for p in sorted(due)[:slots]:
            latest[p] += 1
            out.creates.append(CreatePartition(p, latest[p]))
        slots -= min(slots, len(due))
        for p in _pending(total, succeeded, final_failed, active, due, waiting, by_attempt, latest, slots):
            out.creates.append(CreatePartition(p, latest.get(p, 1)))

    started = {x.index for x in out.creates if isinstance(x, CreatePartition)}
    running = active | started
    st.succeeded_indexes = indexsets.compress(succeeded)
    st.failed_indexes = indexsets.compress(final_failed)
    st.attempts = _attempt_sets(latest)
    st.partitions.succeeded = len(succeeded)
    st.partitions.failed = len(final_failed)
    st.partitions.running = len(running)
    st.partitions.pending = total - len(succeeded) - len(final_failed) - len(running)
    if waiting:
        out.requeue_after = min(waiting.values())

    if st.phase == "Failed" or breached:
        if st.phase != "Failed":
            _fail(
                out,
                "FailureToleranceExceeded",
                f"{len(final_failed)} of {total} partitions failed ({indexsets.compress(final_failed)}), "
                f"more than the tolerance allows; no new partitions start, running ones finish",
                now,
            )
    elif len(succeeded) + len(final_failed) == total:
        st.phase = "Succeeded"
        msg = f"{len(succeeded)} of {total} partitions succeeded"
        if final_failed:
            msg += f"; {len(final_failed)} failed within tolerance ({indexsets.compress(final_failed)})"
        st.message = msg
        if get_condition(st.conditions, c.COND_SUCCEEDED) is None:
            out.manifest = [(p, latest.get(p, 1)) for p in sorted(succeeded)]
        st.conditions = set_condition(
            st.conditions, c.COND_SUCCEEDED, "True", "AllPartitionsDone", msg, obs.generation, now
        )
    elif spec.suspend:
        st.phase = "Suspended"
    else:
        st.phase = "Running"


def _pending(
    total: int,
    succeeded: set[int],
    failed: set[int],
    active: set[int],
    due: list[int],
    waiting: dict[int, float],
    by_attempt: dict[tuple[int, int], JobFacts],
    latest: dict[int, int],
    limit: int,
) -> Iterator[int]:
    """Lowest partitions first whose current attempt has no Job yet; lazily, up to ``limit``."""
    if limit <= 0:
        return
    taken = 0
    busy = succeeded | failed | active | set(due) | set(waiting)
    for p in range(total):
        if p in busy or (p, latest.get(p, 1)) in by_attempt:
            continue
        yield p
        taken += 1
        if taken >= limit:
            return


def _breached(spec: WorkflowSpec, failed: int, total: int) -> bool:
    if failed == 0:
        return False
    tol = spec.failure_tolerance
    if tol.count is None and tol.percentage is None:
        return True
    # As in Step Functions: with both set, exceeding either one fails the run.
    over_count = tol.count is not None and failed > tol.count
    over_pct = tol.percentage is not None and failed * 100.0 / total > tol.percentage
    return over_count or over_pct


def _attempt_sets(latest: dict[int, int]) -> dict[str, str]:
    groups: dict[int, list[int]] = {}
    for p, a in latest.items():
        if a > 1:
            groups.setdefault(a, []).append(p)
    return {str(a): indexsets.compress(ps) for a, ps in sorted(groups.items())}


def _finish(out: Plan, before: WorkflowStatus, obs: Observed, now: str) -> Plan:
    st = out.status
    if st.phase in TERMINAL and st.completion_time is None:
        st.completion_time = now
    if st.phase == "Suspended":
        st.conditions = set_condition(
            st.conditions,
            c.COND_SUSPENDED,
            "True",
            "Suspended",
            "spec.suspend is true: no new partitions start",
            obs.generation,
            now,
        )
    else:
        st.conditions = remove_condition(st.conditions, c.COND_SUSPENDED)
    if st.phase != before.phase:
        kind: Literal["Normal", "Warning"] = "Warning" if st.phase == "Failed" else "Normal"
        out.events.append(Event(kind, st.phase, st.message or f"phase {before.phase} -> {st.phase}"))
    return out
