"""``plan(spec, status, observed) -> Plan``: the whole decision of one reconcile pass.

Level-triggered: the plan depends only on the spec, the last status written, and what the
cluster and MinIO hold now (``Observed``). Re-running it after a crash recomputes the same
decisions, and every action it asks for is idempotent (deterministic names; a create that
finds the object already there is a no-op).

The durable record of a partition's fate is its Job (kept until the workflow is deleted or its
TTL expires) and, once written, the range-compressed sets in status. The union of both is used,
so a Job deleted by hand after its success was recorded does not make the partition run again;
with ``succeededJobs: Delete`` the operator deletes them itself, once status records them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from paraflow import constants as c
from paraflow.models import (
    TERMINAL,
    ReduceStatus,
    ReplicationSpec,
    ReplicationStatus,
    WorkflowSpec,
    WorkflowStatus,
)
from paraflow.planning import indexsets, stalls
from paraflow.planning.conditions import get_condition, remove_condition, set_condition
from paraflow.planning.stalls import Stall
from paraflow.planning.tracking import (
    Budget,
    JobFacts,
    JobState,
    Progress,
    attempt_sets,
    fresh_attempts,
    latest_attempts,
    schedule,
    track,
)
from paraflow.reasons import ConditionType, Reason
from paraflow_worker import contract

__all__ = ["JobFacts", "JobState"]


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
    # Reports of finished replication Jobs the planner asked for (needs_reports), by Job name.
    reports: Mapping[str, ReplicationTally] | None = None
    # The record of a succeeded reduce attempt, when asked for (needs_reduce_record): attempt ->
    # '' when it is there and valid, else why not.
    reduce_records: Mapping[int, str] | None = None
    # Jobs one pass may create, all kinds together: a workflow raised to 10,000 at once is
    # created over several passes and cannot starve the others (the Job controller caps its
    # pod creates per sync the same way).
    max_creates: int = 500
    # succeededJobs: Delete keeps this many of a running workflow's newest succeeded Jobs.
    kept_while_running: int = 1000
    # A child Job with no pod ready or finished for this long is stalled: the reconciler asks why
    # (sparingly). ``stall_asked``: the Jobs it asked about this pass; ``stall``: the cause it
    # found, if any (none found: no asked Job has one now).
    stall_seconds: float = 8.0
    stall_asked: tuple[str, ...] = ()
    stall: Stall | None = None


@dataclass(frozen=True)
class ReplicationTally:
    """One replication Job's report, summed over its pods and destinations."""

    copied: int = 0
    bytes: int = 0
    skipped: int = 0
    failed: int = 0
    deleted: int = 0
    first_failure: str = ""
    deletions: tuple[str, ...] = ()  # "<destination>:<key>" of the first few deleted replicas
    reports: str = ""  # where the reports listing every deletion are


@dataclass(frozen=True)
class CreatePartitioner:
    pass


@dataclass(frozen=True)
class CreatePartition:
    index: int
    attempt: int


@dataclass(frozen=True)
class CreateReplication:
    """``index`` is the partition (perPartition), or 0 for the run-wide copy (afterAll)."""

    index: int
    attempt: int
    winner: int  # the partition's winning attempt (perPartition); 0 for afterAll
    reduce_attempt: int | None = None  # afterAll with a reduce step: its winning attempt


@dataclass(frozen=True)
class CreateReduce:
    attempt: int


# The apiserver refuses an Event whose message is longer (in bytes), and the Event is lost.
EVENT_MESSAGE_MAX_BYTES = 1024


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str

    def bounded_message(self) -> str:
        """The message cut to what an Event can hold, marked with an ellipsis where it was cut."""
        data = self.message.encode()
        if len(data) <= EVENT_MESSAGE_MAX_BYTES:
            return self.message
        return data[: EVENT_MESSAGE_MAX_BYTES - 3].decode(errors="ignore") + "…"


@dataclass
class Plan:
    status: WorkflowStatus
    creates: list[CreatePartitioner | CreatePartition | CreateReduce | CreateReplication] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Set when the workflow just finished: (index, winning attempt) of each succeeded partition.
    manifest: list[tuple[int, int]] | None = None
    requeue_after: float | None = None
    # Succeeded partition Jobs to delete (succeededJobs: Delete), by name.
    deletes: list[str] = field(default_factory=list)

    def room(self, slots: int, cap: int) -> int:
        """``slots`` bounded by what the pass may still create; if that bounds it, come back soon."""
        left = cap - len(self.creates)
        if slots > left:
            self.requeue_after = min(self.requeue_after or CAPPED_REQUEUE_SECONDS, CAPPED_REQUEUE_SECONDS)
        return min(slots, left)


CAPPED_REQUEUE_SECONDS = 1.0
# Deletes are housekeeping: a finished run's 1,000 succeeded Jobs go over ten passes, not in one
# burst of deletes, watch events and garbage collection that the next workflow's creates wait on.
MAX_DELETES_PER_PASS = 100


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def settled(spec: WorkflowSpec, status: WorkflowStatus, jobs: Sequence[JobFacts], redrive_token: str) -> bool:
    """A finished workflow with nothing left to do: no Job of it runs, every report it needs is
    read, its manifest is written, no redrive is asked. A pass over it needs no Secret and no
    MinIO, changes nothing but its ``deletable`` Jobs, and its loop may sleep until an event (or
    its TTL) comes."""
    if status.phase not in TERMINAL or (redrive_token and redrive_token != status.redrive.last_token):
        return False
    if any(j.state is JobState.ACTIVE for j in jobs) or needs_reports(spec, status, jobs):
        return False
    return bool(status.manifest) or get_condition(status.conditions, ConditionType.PARTITIONED) is None


def deletable(spec: WorkflowSpec, status: WorkflowStatus, jobs: Sequence[JobFacts], keep: int = 0) -> list[str]:
    """Succeeded partition Jobs that ``succeededJobs: Delete`` may remove, oldest first, all but
    the newest ``keep``: those whose success, with the same attempt as its winner, is in
    ``status``, once that status is written. Deleted before, a pass that lost the status write
    would find neither the Job nor the record, and run the partition again."""
    if spec.succeeded_jobs != "Delete":
        return []
    recorded = indexsets.expand(status.succeeded_indexes)
    if not recorded:
        return []
    winners = latest_attempts((), _partition_of, status.attempts)
    done = [
        j
        for j in jobs
        if j.role == c.ROLE_PARTITION
        and j.state is JobState.SUCCEEDED
        and j.partition in recorded
        and j.attempt == winners.get(j.partition, 1)
    ]
    if len(done) <= keep:
        return []
    done.sort(key=lambda j: (j.finished_at or dt.datetime.min.replace(tzinfo=dt.UTC), j.name))
    return [j.name for j in done[: len(done) - keep]]


def expires_in(spec: WorkflowSpec, status: WorkflowStatus, now: dt.datetime) -> float | None:
    """Seconds until ``ttlSecondsAfterFinished`` deletes the workflow (0 or less: now), or None."""
    ttl = spec.ttl_seconds_after_finished
    if ttl is None or status.phase not in TERMINAL or status.completion_time is None:
        return None
    finished = dt.datetime.fromisoformat(status.completion_time.replace("Z", "+00:00"))
    return ttl - (now - finished).total_seconds()


def needs_plan(status: WorkflowStatus, jobs: Sequence[JobFacts]) -> bool:
    """True when the partitioner succeeded and its plan has not been read into status yet."""
    if get_condition(status.conditions, ConditionType.PARTITIONED) is not None:
        return False
    return any(j.role == c.ROLE_PARTITIONER and j.state is JobState.SUCCEEDED for j in jobs)


def plan(spec: WorkflowSpec, status: WorkflowStatus, obs: Observed) -> Plan:
    new = status.model_copy(deep=True)
    now = timestamp(obs.now)
    new.observed_generation = obs.generation
    new.start_time = new.start_time or now
    # The reconciler plans only once it has read the Secret and reached the storage it needs.
    new.conditions = remove_condition(new.conditions, ConditionType.BLOCKED)
    out = Plan(status=new)
    _replication_mode(out, spec, obs)
    _redrive(out, spec, obs, now)
    if get_condition(new.conditions, ConditionType.PARTITIONED) is None:
        _partition_stage(out, spec, obs, now)
        if get_condition(new.conditions, ConditionType.PARTITIONED) is None:
            return _finish(out, spec, status, obs, now)
    _fan_out(out, spec, obs, now)
    # Written by this pass's status patch, which the reconciler sends before any delete.
    keep = 0 if out.status.phase in TERMINAL else obs.kept_while_running
    done = deletable(spec, out.status, obs.jobs, keep)
    out.deletes = done[:MAX_DELETES_PER_PASS]
    if len(done) > MAX_DELETES_PER_PASS:
        out.requeue_after = min(out.requeue_after or CAPPED_REQUEUE_SECONDS, CAPPED_REQUEUE_SECONDS)
    return _finish(out, spec, status, obs, now)


def _replication_mode(out: Plan, spec: WorkflowSpec, obs: Observed) -> None:
    """A replication mode changed since the records were made (perPartition to afterAll is how a
    user gets deleteSync): a partition's index and the run-wide copy's 0 are different units, so
    the records start over, and a unit that already has Jobs in the new mode (from an earlier
    switch) starts past them."""
    rs = out.status.replication
    if spec.replication is None or rs is None or rs.mode == spec.replication.mode:
        return
    if rs.mode is not None:
        unit_of = _replication_unit(spec.replication.mode)
        earlier = {unit for job in obs.jobs if (unit := unit_of(job)) is not None}
        budget = Budget(spec.retry, out.status.redrive.count)
        rs.attempts = fresh_attempts(obs.jobs, unit_of, {}, earlier, budget)
        rs.replicated_indexes, rs.failed_indexes, rs.failed, rs.start_time = "", "", 0, None
        out.status.conditions = remove_condition(out.status.conditions, ConditionType.REPLICATION_LATE)
        out.events.append(
            Event(
                "Normal",
                Reason.REPLICATION_MODE_CHANGED,
                f"replication.mode is {spec.replication.mode} now (was {rs.mode}): what was replicated is "
                "counted again in the new mode",
            )
        )
    rs.mode = spec.replication.mode


def _redrive(out: Plan, spec: WorkflowSpec, obs: Observed, now: str) -> None:
    """A new redrive token on a finished workflow re-runs what failed (partitions, replication)
    with fresh attempts; on a Succeeded workflow with replication, it re-runs the replication,
    which restores replicas deleted or damaged since (protection from deletion)."""
    st = out.status
    if not obs.redrive_token or obs.redrive_token == st.redrive.last_token:
        return
    st.redrive.last_token = obs.redrive_token
    rs = st.replication
    replication_failed = rs is not None and bool(rs.failed_indexes)
    if st.phase not in TERMINAL:
        why = f"the workflow is still {st.phase}: only a finished workflow can be redriven"
    elif st.phase == "Succeeded" and not st.failed_indexes and spec.replication is None:
        why = "it succeeded with nothing failed and has no replication to re-run"
    else:
        why = ""
    if why:
        out.events.append(Event("Warning", Reason.REDRIVE_IGNORED, f"redrive {obs.redrive_token!r} ignored: {why}"))
        return
    st.redrive.count += 1
    st.phase, st.completion_time, st.message = "Running", None, ""
    st.conditions = remove_condition(remove_condition(st.conditions, ConditionType.FAILED), ConditionType.SUCCEEDED)
    if get_condition(st.conditions, ConditionType.PARTITIONED) is None:
        # The partitioner itself failed: a redrive runs it again from scratch.
        out.events.append(Event("Normal", Reason.REDRIVEN, f"redrive #{st.redrive.count}: re-running the partitioner"))
        st.phase = "Pending"
        return
    failed = st.failed_indexes
    st.failed_indexes = ""
    budget = Budget(spec.retry, st.redrive.count)
    st.attempts = fresh_attempts(obs.jobs, _partition_of, st.attempts, indexsets.expand(failed), budget)
    if failed:
        st.manifest = ""  # re-run partitions change the winners: a new manifest at the end
    what = [f"failed partitions {failed}"] if failed else []
    reduce_failed = st.reduce is not None and st.reduce.phase == "Failed"
    if spec.reduce is not None and (failed or reduce_failed):
        _rerun_reduce(st, obs.jobs, budget)
        what.append("the reduce step" + (" on the new manifest" if failed else ""))
    if spec.replication is not None and rs is not None:
        whole_run = spec.replication.mode == "afterAll"
        again = indexsets.expand(rs.failed_indexes)
        if not failed and not replication_failed:
            again |= indexsets.expand(rs.replicated_indexes)  # a Succeeded run: copy everything again
        if whole_run:
            # Always from a fresh attempt of the round: the copy reads the manifest and the reduce
            # step's outputs, which this redrive may change, and gets a whole maxAttempts.
            again = {0}
        if whole_run or (not failed and not replication_failed):
            rs.objects = rs.bytes = rs.skipped = rs.deleted = 0
            st.conditions = remove_condition(st.conditions, ConditionType.REPLICATED)
        unit_of = _replication_unit(spec.replication.mode)
        rs.attempts = fresh_attempts(obs.jobs, unit_of, rs.attempts, again, budget)
        rs.replicated_indexes = indexsets.compress(indexsets.expand(rs.replicated_indexes) - again)
        # What failed is being retried: its failures, and the deadline, count from now.
        rs.failed_indexes, rs.failed, rs.start_time = "", 0, None
        st.conditions = remove_condition(st.conditions, ConditionType.REPLICATION_LATE)
        if again:
            what.append(
                "the run-wide replication" if whole_run else f"replication of partitions {indexsets.compress(again)}"
            )
    out.events.append(
        Event(
            "Normal",
            Reason.REDRIVEN,
            f"redrive #{st.redrive.count}: re-running {', '.join(what) or 'partitions never started'}",
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
                Reason.NO_PARTITIONS,
                "the partitioner found no input items "
                + (f"under s3://{spec.input.bucket}/{spec.input.prefix}" if spec.input.bucket else "in input.items"),
                now,
            )
            return
        st.partitions.total = obs.plan.partition_count
        st.conditions = set_condition(
            st.conditions,
            ConditionType.PARTITIONED,
            reason=Reason.PLAN_READ,
            message=f"{obs.plan.partition_count} partitions",
            generation=obs.generation,
            now=now,
        )
        out.events.append(Event("Normal", Reason.PARTITIONED, f"plan has {obs.plan.partition_count} partitions"))
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
        _fail(out, Reason.PARTITIONER_FAILED, f"partitioner Job {current.name} failed: {current.message}", now)
    else:
        st.phase = "Partitioning"


def _fail(out: Plan, reason: str, message: str, now: str) -> None:
    st = out.status
    st.phase, st.message = "Failed", message
    st.conditions = set_condition(
        st.conditions, ConditionType.FAILED, reason=reason, message=message, generation=st.observed_generation, now=now
    )


def _partition_of(job: JobFacts) -> int | None:
    return job.partition if job.role == c.ROLE_PARTITION else None


def _fan_out(out: Plan, spec: WorkflowSpec, obs: Observed, now: str) -> None:
    st = out.status
    total = st.partitions.total
    budget = Budget(spec.retry, st.redrive.count)
    jobs = [j for j in obs.jobs if j.partition is None or j.partition < total]
    progress = track(
        jobs, _partition_of, st.attempts, st.succeeded_indexes, st.failed_indexes, budget, obs.uid, obs.now
    )
    final = {u for u in progress.newly_failed if (job := progress.current_job(u)) is not None and not job.retryable}
    if progress.newly_failed - final:
        out.events.append(
            Event(
                "Warning",
                Reason.PARTITIONS_FAILED,
                f"partition(s) {indexsets.compress(progress.newly_failed - final)} failed after their last attempt",
            )
        )
    if final:
        out.events.append(
            Event(
                "Warning",
                Reason.PARTITIONS_FAILED,
                f"partition(s) {indexsets.compress(final)} failed with a non-retryable exit code "
                "(processor.nonRetryableExitCodes): not retried",
            )
        )
    failed = progress.failed
    breached = _breached(spec, len(failed), total)
    if not breached and not spec.suspend and st.phase != "Failed":
        slots = out.room(spec.max_concurrency - len(progress.active), obs.max_creates)
        out.creates += [CreatePartition(p, a) for p, a in schedule(progress, range(total), slots)]

    running = progress.active | {x.index for x in out.creates if isinstance(x, CreatePartition)}
    st.succeeded_indexes = indexsets.compress(progress.succeeded)
    st.failed_indexes = indexsets.compress(failed)
    st.attempts = progress.attempt_sets()
    st.partitions.succeeded = len(progress.succeeded)
    st.partitions.failed = len(failed)
    st.partitions.running = len(running)
    st.partitions.pending = total - len(progress.succeeded) - len(failed) - len(running)
    _requeue(out, progress)

    fanned_out = len(progress.succeeded) + len(failed) == total
    if breached and st.phase != "Failed":
        _fail(
            out,
            Reason.FAILURE_TOLERANCE_EXCEEDED,
            f"{len(failed)} of {total} partitions failed ({indexsets.compress(failed)}), more than the "
            "tolerance allows; no new partitions start, running ones finish",
            now,
        )
    winners = {p: progress.latest.get(p, 1) for p in progress.succeeded}
    # A failed run still indexes what succeeded (like ResultWriter), once nothing runs any more.
    settled = fanned_out or (st.phase == "Failed" and not progress.active)
    if settled and not st.manifest:
        out.manifest = sorted(winners.items())
    reduced = reduce_stage(out, spec, obs, fanned_out, now)
    replicated = True
    if spec.replication is not None:
        replicated = replication_stage(out, spec, spec.replication, obs, winners, fanned_out and reduced, now)
    if get_condition(st.conditions, ConditionType.FAILED) is not None:
        return
    if fanned_out and reduced and replicated:
        msg = f"{len(progress.succeeded)} of {total} partitions succeeded"
        if failed:
            msg += f"; {len(failed)} failed within tolerance ({indexsets.compress(failed)})"
        st.phase, st.message = "Succeeded", msg
        st.conditions = set_condition(
            st.conditions,
            ConditionType.SUCCEEDED,
            reason=Reason.ALL_PARTITIONS_DONE,
            message=msg,
            generation=obs.generation,
            now=now,
        )
    elif fanned_out and spec.suspend and not any(j.state is JobState.ACTIVE for j in obs.jobs):
        st.phase = "Suspended"  # what comes after the map waits too, and nothing runs
    elif fanned_out and not reduced:
        st.phase = "Reducing"
    elif fanned_out:
        st.phase = "Replicating"
    elif spec.suspend:
        st.phase = "Suspended"
    else:
        st.phase = "Running"


def _reduce_unit(job: JobFacts) -> int | None:
    return 0 if job.role == c.ROLE_REDUCE else None


def needs_reduce_record(spec: WorkflowSpec, status: WorkflowStatus, jobs: Sequence[JobFacts]) -> int | None:
    """The attempt of a succeeded reduce Job whose record must be checked before it counts."""
    if spec.reduce is None or (status.reduce is not None and status.reduce.phase == "Succeeded"):
        return None
    done = [j.attempt for j in jobs if j.role == c.ROLE_REDUCE and j.state is JobState.SUCCEEDED]
    return max(done, default=None)


def _as_recorded(job: JobFacts, records: Mapping[int, str]) -> JobFacts:
    """A reduce Job that succeeded without a usable record failed: nothing could follow it to
    its outputs. Not yet checked: still running, as far as the plan goes."""
    if job.role != c.ROLE_REDUCE or job.state is not JobState.SUCCEEDED:
        return job
    problem = records.get(job.attempt)
    if problem is None:
        return replace(job, state=JobState.ACTIVE)
    if problem:
        message = (
            f"the Job succeeded but {problem}; a reduce step records its outputs by leaving "
            "`with sdk.reduce()` normally (or writes that record itself, see the contract)"
        )
        return replace(job, state=JobState.FAILED, message=message, reason=Reason.REDUCE_NOT_RECORDED)
    return job


def reduce_stage(out: Plan, spec: WorkflowSpec, obs: Observed, fanned_out: bool, now: str) -> bool:
    """Runs the reduce step once, after the map is done and its manifest written (the step reads
    it); True when there is no reduce step or it succeeded. Failing for good fails the run."""
    if spec.reduce is None:
        return True
    st = out.status
    rd = st.reduce = (st.reduce or ReduceStatus()).model_copy(deep=True)
    progress = track(
        [_as_recorded(j, obs.reduce_records or {}) for j in obs.jobs],
        _reduce_unit,
        attempt_sets({0: rd.attempt}),
        "0" if rd.phase == "Succeeded" else "",
        "0" if rd.phase == "Failed" else "",
        Budget(spec.retry, st.redrive.count),
        f"{obs.uid}/reduce",
        obs.now,
    )
    rd.attempt = progress.latest.get(0, rd.attempt)
    if progress.succeeded:
        if rd.phase != "Succeeded":
            rd.phase = "Succeeded"
            where = contract.reduce_output_prefix(spec.output.prefix, obs.uid, rd.attempt)
            rd.output_prefix = f"s3://{spec.output.bucket}/{where}"
            message = f"attempt {rd.attempt} succeeded; its outputs are under {rd.output_prefix}"
            st.conditions = set_condition(
                st.conditions,
                ConditionType.REDUCED,
                reason=Reason.REDUCE_SUCCEEDED,
                message=message,
                generation=obs.generation,
                now=now,
            )
            out.events.append(Event("Normal", Reason.REDUCED, f"reduce step {message}"))
        return True
    if progress.failed:
        if rd.phase != "Failed":
            rd.phase = "Failed"
            job = progress.current_job(0)
            why = f"Job {job.name}: {job.message}" if job is not None else "its Job is gone"
            if st.phase != "Failed":
                _fail(
                    out,
                    Reason(job.reason) if job is not None and job.reason else Reason.REDUCE_FAILED,
                    f"the reduce step failed after its last attempt ({why}); the map's outputs and manifest are "
                    "kept, and a redrive runs the reduce step again",
                    now,
                )
        return False
    manifest_written = bool(st.manifest) or out.manifest is not None
    if fanned_out and manifest_written and st.phase != "Failed" and not spec.suspend:
        last = progress.current_job(0)
        for _, attempt in schedule(progress, [0], out.room(1 - len(progress.active), obs.max_creates)):
            out.creates.append(CreateReduce(attempt))
            rd.attempt = attempt
            if last is not None and last.state is JobState.FAILED and attempt > last.attempt:
                out.events.append(
                    Event(
                        "Warning",
                        Reason.REDUCE_ATTEMPT_FAILED,
                        f"reduce Job {last.name} failed ({last.message or 'no reason given'}); "
                        f"starting attempt {attempt}",
                    )
                )
    starting = any(isinstance(x, CreateReduce) for x in out.creates)
    rd.phase = "Running" if progress.active or starting else "Pending"
    _requeue(out, progress)
    return False


def _rerun_reduce(st: WorkflowStatus, jobs: Sequence[JobFacts], budget: Budget) -> None:
    """The reduce step starts again from a fresh attempt, after the map's new manifest."""
    previous = st.reduce or ReduceStatus()
    fresh = fresh_attempts(jobs, _reduce_unit, attempt_sets({0: previous.attempt}), {0}, budget)
    st.reduce = ReduceStatus(attempt=max((int(a) for a in fresh), default=1))
    st.conditions = remove_condition(st.conditions, ConditionType.REDUCED)


def _requeue(out: Plan, progress: Progress) -> None:
    if progress.waiting:
        soonest = min(progress.waiting.values())
        out.requeue_after = soonest if out.requeue_after is None else min(out.requeue_after, soonest)


def _replication_unit(mode: str) -> Callable[[JobFacts], int | None]:
    def unit(job: JobFacts) -> int | None:
        if mode == "afterAll":
            return 0 if job.role == c.ROLE_REPLICATION_ALL else None
        return job.partition if job.role == c.ROLE_REPLICATION else None

    return unit


def needs_reports(spec: WorkflowSpec, status: WorkflowStatus, jobs: Sequence[JobFacts]) -> list[JobFacts]:
    """Finished replication Jobs whose outcome status does not hold yet: their reports are needed."""
    if spec.replication is None:
        return []
    rs = status.replication or ReplicationStatus()
    budget = Budget(spec.retry, status.redrive.count)
    done, failed = indexsets.expand(rs.replicated_indexes), indexsets.expand(rs.failed_indexes)
    unit_of = _replication_unit(spec.replication.mode)
    wanted = []
    for job in jobs:
        unit = unit_of(job)
        if unit is None or unit in done or unit in failed:
            continue
        if job.state is JobState.SUCCEEDED or (job.state is JobState.FAILED and job.attempt >= budget.attempts):
            wanted.append(job)
    return wanted


def replication_stage(
    out: Plan,
    spec: WorkflowSpec,
    rspec: ReplicationSpec,
    obs: Observed,
    winners: dict[int, int],
    fanned_out: bool,
    now: str,
) -> bool:
    """Plans replication Jobs and accounts finished ones; True when every output is replicated."""
    st = out.status
    rs = st.replication = (st.replication or ReplicationStatus()).model_copy(deep=True)
    rs.mode = rs.mode or rspec.mode
    budget = Budget(spec.retry, st.redrive.count)
    unit_of = _replication_unit(rspec.mode)
    progress = track(
        obs.jobs,
        unit_of,
        rs.attempts,
        rs.replicated_indexes,
        rs.failed_indexes,
        budget,
        f"{obs.uid}/replication",
        obs.now,
    )
    accounted = indexsets.expand(rs.replicated_indexes) | indexsets.expand(rs.failed_indexes)
    for (unit, attempt), job in sorted(progress.jobs.items()):
        tally = (obs.reports or {}).get(job.name)
        if tally is None or unit in accounted or attempt != progress.latest.get(unit):
            continue
        # What a failed Job copied before it failed is there too: counted like a success's.
        rs.objects += tally.copied
        rs.bytes += tally.bytes
        rs.skipped += tally.skipped
        rs.deleted += tally.deleted
        if job.state is JobState.SUCCEEDED:
            if tally.deleted:
                more = (
                    f" and {tally.deleted - len(tally.deletions)} more" if tally.deleted > len(tally.deletions) else ""
                )
                out.events.append(
                    Event(
                        "Normal",
                        Reason.REPLICAS_DELETED,
                        f"deleteSync: {job.name} deleted {tally.deleted} replica(s) whose output left the run: "
                        f"{', '.join(tally.deletions)}{more} (every key listed in {tally.reports})",
                    )
                )
        else:
            rs.failed += tally.failed
            out.events.append(
                Event(
                    "Warning",
                    Reason.REPLICATION_FAILED,
                    f"replication Job {job.name} failed for good: {tally.failed} object(s) not "
                    f"copied; first: {tally.first_failure}",
                )
            )
    units_wanted: list[int] = ([0] if fanned_out else []) if rspec.mode == "afterAll" else sorted(winners)
    if not st.manifest and rspec.mode == "afterAll":
        units_wanted = []  # the run-wide copy reads the manifest: not before it is written
    if out.manifest is not None and rspec.mode == "afterAll" and fanned_out:
        units_wanted = [0]  # written in this very pass, before any Job is created
    if st.phase != "Failed" and not spec.suspend:
        limit = rspec.max_concurrency or spec.max_concurrency
        slots = out.room(limit - len(progress.active), obs.max_creates)
        reduced = st.reduce.attempt if st.reduce is not None and st.reduce.phase == "Succeeded" else None
        for unit, attempt in schedule(progress, units_wanted, slots):
            rs.start_time = rs.start_time or now
            if rspec.mode == "afterAll":
                out.creates.append(CreateReplication(unit, attempt, 0, reduced))
            else:
                out.creates.append(CreateReplication(unit, attempt, winners.get(unit, 0)))
    _requeue(out, progress)
    rs.replicated_indexes = indexsets.compress(progress.succeeded)
    rs.failed_indexes = indexsets.compress(progress.failed)
    rs.attempts = progress.attempt_sets()
    total_units = 1 if rspec.mode == "afterAll" else len(winners)
    if rspec.mode == "afterAll":
        rs.partitions = len(winners) if progress.succeeded else 0
        rs.pending = 0 if progress.failed else len(winners) - rs.partitions
    else:
        rs.partitions = len(progress.succeeded & winners.keys())
        rs.pending = max(0, len(winners) - len(progress.succeeded) - len(progress.failed))
    if progress.failed and st.phase != "Failed":
        _fail(
            out,
            Reason.REPLICATION_FAILED,
            f"replication failed for {'the run' if rspec.mode == 'afterAll' else 'partition(s) '}"
            f"{'' if rspec.mode == 'afterAll' else indexsets.compress(progress.failed)} after its last attempt; "
            "a redrive retries it",
            now,
        )
        return False
    _deadline(out, rspec, obs, now)
    complete = fanned_out and len(progress.succeeded) == total_units
    if complete:
        st.conditions = set_condition(
            st.conditions,
            ConditionType.REPLICATED,
            reason=Reason.ALL_REPLICATED,
            message=f"{rs.objects} objects ({rs.bytes} bytes) copied, {rs.skipped} already "
            f"there, to {len(rspec.destinations)} destination(s)"
            + (f"; {rs.deleted} replica(s) deleted (deleteSync)" if rspec.delete_sync else ""),
            generation=obs.generation,
            now=now,
        )
    return complete


def _deadline(out: Plan, rspec: ReplicationSpec, obs: Observed, now: str) -> None:
    rs = out.status.replication
    if rspec.deadline_seconds is None or rs is None or rs.start_time is None:
        return
    if get_condition(out.status.conditions, ConditionType.REPLICATION_LATE) is not None:
        return
    started = dt.datetime.fromisoformat(rs.start_time.replace("Z", "+00:00"))
    late = (obs.now - started).total_seconds() - rspec.deadline_seconds
    if late < 0:
        out.requeue_after = min(out.requeue_after or -late, -late)
        return
    message = f"replication has run longer than its deadline of {rspec.deadline_seconds}s"
    out.status.conditions = set_condition(
        out.status.conditions,
        ConditionType.REPLICATION_LATE,
        reason=Reason.DEADLINE_EXCEEDED,
        message=message,
        generation=obs.generation,
        now=now,
    )
    out.events.append(Event("Warning", Reason.REPLICATION_DEADLINE_EXCEEDED, message))


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


def _pods_blocked(out: Plan, obs: Observed, now: str) -> None:
    """``PodsBlocked`` while a child has waited ``stall_seconds`` for a pod and the reconciler found
    why; cleared once no child waits that long. No Job event may come while pods are refused, so
    the pass comes back when the next child would be due."""
    st = out.status
    after = obs.stall_seconds
    ages = [(obs.now - j.created_at).total_seconds() for j in obs.jobs if j.stalled and j.created_at is not None]
    if ages:
        soonest = min(after - age if age < after else after for age in ages)
        out.requeue_after = min(out.requeue_after or soonest, soonest)
    old = get_condition(st.conditions, ConditionType.PODS_BLOCKED)
    healed = old is not None and obs.stall is None and any(stalls.is_about(old.message, j) for j in obs.stall_asked)
    if not any(age >= after for age in ages) or healed:
        # Nobody waits long enough, or the Job the condition names was asked about again and
        # has no cause any more (a refusal fixed, now a slow image pull): nothing to say.
        st.conditions = remove_condition(st.conditions, ConditionType.PODS_BLOCKED)
        return
    if obs.stall is None:
        return  # not asked about that Job this pass: what the last answer said still holds
    if old is not None and old.reason == obs.stall.reason:
        return  # the same cause, found on another Job: no new Event, no status write
    out.events.append(Event("Warning", obs.stall.reason, obs.stall.line()))
    st.conditions = set_condition(
        st.conditions,
        ConditionType.PODS_BLOCKED,
        reason=obs.stall.reason,
        message=obs.stall.line(),
        generation=st.observed_generation,
        now=now,
    )


def _milestones(st: WorkflowStatus) -> tuple[object, ...]:
    """What moves when a run makes progress."""
    rs, rd = st.replication, st.reduce
    return (
        st.partitions.total,
        st.succeeded_indexes,
        st.failed_indexes,
        st.manifest,
        (rs.replicated_indexes, rs.failed_indexes, rs.objects) if rs is not None else None,
        (rd.phase, rd.attempt) if rd is not None else None,
    )


def _progress_deadline(out: Plan, spec: WorkflowSpec, before: WorkflowStatus, obs: Observed, now: str) -> None:
    """A run whose every active child waits for a pod, with nothing else moving, fails once that
    has lasted ``progressDeadlineSeconds`` instead of waiting forever. Its stuck Jobs go (the
    failed run writes its manifest once nothing is active), and a redrive re-runs them."""
    st = out.status
    active = [j for j in obs.jobs if j.state is JobState.ACTIVE]
    if st.phase == "Failed":
        # A failed run starts nothing more, and one whose child never got a pod would never
        # settle (nor write its manifest): those children go, each pass until they are gone.
        out.deletes += [j.name for j in _waiting_long(active, obs) if j.name not in out.deletes]
    stuck = (
        st.phase not in TERMINAL
        and not spec.suspend
        and _all_waiting(active)
        and not out.creates
        and _milestones(st) == _milestones(before)
    )
    if not stuck:
        st.no_progress_since = None
        return
    st.no_progress_since = st.no_progress_since or now
    since = dt.datetime.fromisoformat(st.no_progress_since.replace("Z", "+00:00"))
    left = spec.progress_deadline_seconds - (obs.now - since).total_seconds()
    if left > 0:
        out.requeue_after = min(out.requeue_after or left, left)
        return
    blocked = get_condition(st.conditions, ConditionType.PODS_BLOCKED)
    why = blocked.message if blocked is not None else "no child Job got a pod running"
    _fail(
        out,
        Reason.PROGRESS_DEADLINE_EXCEEDED,
        f"no progress for {spec.progress_deadline_seconds}s (spec.progressDeadlineSeconds): {why}; its waiting Jobs "
        "are deleted and a redrive re-runs them",
        now,
    )
    st.no_progress_since = None
    out.deletes += [j.name for j in active if j.name not in out.deletes]


def _waiting_long(active: Sequence[JobFacts], obs: Observed) -> list[JobFacts]:
    """Active children that have had no pod ready or finished for ``stall_seconds``."""
    return [
        j
        for j in active
        if j.stalled and j.created_at is not None and (obs.now - j.created_at).total_seconds() >= obs.stall_seconds
    ]


def _all_waiting(active: Sequence[JobFacts]) -> bool:
    """Every active child waits for a pod: the run is not running, however busy it looks."""
    return bool(active) and all(j.stalled for j in active)


def _finish(out: Plan, spec: WorkflowSpec, before: WorkflowStatus, obs: Observed, now: str) -> Plan:
    st = out.status
    _pods_blocked(out, obs, now)
    _progress_deadline(out, spec, before, obs, now)
    counts = st.partitions
    if counts.total:
        unstarted = counts.total - counts.succeeded - counts.failed - counts.running
        # A failed run starts nothing more: what it never started is not "pending".
        counts.not_run, counts.pending = (unstarted, 0) if st.phase == "Failed" else (0, unstarted)
    if st.phase == "Failed" and st.replication is not None:
        st.replication.pending = 0  # nothing will copy them: a redrive does
    blocked = get_condition(st.conditions, ConditionType.PODS_BLOCKED)
    active = [j for j in obs.jobs if j.state is JobState.ACTIVE]
    # Blocked only when nothing runs: one child waiting among running ones (a busy cluster, a
    # scale-up) keeps its PodsBlocked condition and the run its phase.
    if blocked is not None and st.phase not in TERMINAL and st.phase != "Suspended" and _all_waiting(active):
        # A run whose pods cannot be created or scheduled is not running: it says why, and goes
        # back to its phase by itself once the cause is fixed.
        st.phase, st.message = "Blocked", blocked.message
    elif before.phase == "Blocked" and st.phase not in TERMINAL:
        st.message = ""  # the cause is gone (a Secret, the storage, or the pods)
    if st.phase in TERMINAL and st.completion_time is None:
        st.completion_time = now
    if st.phase == "Suspended":
        st.conditions = set_condition(
            st.conditions,
            ConditionType.SUSPENDED,
            reason=Reason.SUSPENDED,
            message="spec.suspend is true: no new partition, reduce or replication Job starts",
            generation=obs.generation,
            now=now,
        )
    else:
        st.conditions = remove_condition(st.conditions, ConditionType.SUSPENDED)
    if st.phase != before.phase:
        kind: Literal["Normal", "Warning"] = "Warning" if st.phase in ("Failed", "Blocked") else "Normal"
        out.events.append(Event(kind, st.phase, st.message or f"phase {before.phase} -> {st.phase}"))
    return out
