"""``plan(spec, status, observed) -> Plan``: the whole decision of one reconcile pass.

Level-triggered: the plan depends only on the spec, the last status written, and what the
cluster and MinIO hold now (``Observed``). Re-running it after a crash recomputes the same
decisions, and every action it asks for is idempotent (deterministic names; a create that
finds the object already there is a no-op).

One pass, in order: the status corrections a pass starts with (a replication mode change, a
redrive); the partitioner until its plan is read; then the ledger of every unit's attempts,
tracked once; then the stages that read it (the map, the reduce step, replication); then what
decides whether the run can move at all (PodsBlocked, the progress deadline) and the phase.

The durable record of a partition's fate is its Job (kept until the workflow is deleted or its
TTL expires) and, once written, the range-compressed sets in status. The union of both is used,
so a Job deleted by hand after its success was recorded does not make the partition run again;
with ``succeededJobs: Delete`` the operator deletes them itself, once status records them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Literal

from paraflow import constants as c
from paraflow.models import TERMINAL, ReplicationStatus, WorkflowSpec, WorkflowStatus
from paraflow.planning import indexsets, ledger, liveness, logs, queueing
from paraflow.planning.actions import (
    CAPPED_REQUEUE_SECONDS,
    EVENT_MESSAGE_MAX_BYTES,
    CreatePartition,
    CreatePartitioner,
    CreateReduce,
    CreateReplication,
    Event,
    Plan,
)
from paraflow.planning.conditions import get_condition, remove_condition
from paraflow.planning.ledger import JobGroups, Ledger, by_partition
from paraflow.planning.observed import Observed, PlanRead, ReplicationTally
from paraflow.planning.reduce import needs_reduce_record, reduce_stage, rerun_reduce
from paraflow.planning.replication import Inputs, needs_reports, replication_stage, units_for
from paraflow.planning.tracking import Budget, JobFacts, JobState, fresh_attempts, latest_attempts, schedule
from paraflow.reasons import ConditionType, Reason

__all__ = [
    "CAPPED_REQUEUE_SECONDS",
    "EVENT_MESSAGE_MAX_BYTES",
    "CreatePartition",
    "CreatePartitioner",
    "CreateReduce",
    "CreateReplication",
    "Event",
    "JobFacts",
    "JobState",
    "Observed",
    "Plan",
    "PlanRead",
    "ReplicationTally",
    "needs_reduce_record",
    "needs_reports",
]

# Deletes are housekeeping: a finished run's 1,000 succeeded Jobs go over ten passes, not in one
# burst of deletes, watch events and garbage collection that the next workflow's creates wait on.
MAX_DELETES_PER_PASS = 100


def settled(
    spec: WorkflowSpec,
    status: WorkflowStatus,
    jobs: Sequence[JobFacts],
    *,
    redrive_token: str,
    logs_kept: Collection[str] | None,
) -> bool:
    """A finished workflow with nothing left to do: no Job of it runs, every report it needs is
    read, its manifest is written, no redrive is asked. A pass over it needs no Secret and no
    MinIO, changes nothing but its ``deletable`` Jobs, and its loop may sleep until an event (or
    its TTL) comes."""
    if status.phase not in TERMINAL or (redrive_token and redrive_token != status.redrive.last_token):
        return False
    if status.running_indexes or status.queued_indexes:
        return False  # one more pass names them again from the Jobs there are (none, once deleted)
    if any(j.state is JobState.ACTIVE for j in jobs) or needs_reports(spec, status, jobs):
        return False
    if logs.owed(spec, jobs, logs_kept):
        return False
    return bool(status.manifest) or get_condition(status.conditions, ConditionType.PARTITIONED) is None


def deletable(spec: WorkflowSpec, status: WorkflowStatus, jobs: Sequence[JobFacts], *, keep: int = 0) -> list[str]:
    """Succeeded partition Jobs that ``succeededJobs: Delete`` may remove, oldest first, all but
    the newest ``keep``: those whose success, with the same attempt as its winner, is in
    ``status``, once that status is written. Deleted before, a pass that lost the status write
    would find neither the Job nor the record, and run the partition again."""
    if spec.succeeded_jobs != "Delete":
        return []
    recorded = indexsets.expand(status.succeeded_indexes)
    if not recorded:
        return []
    winners = latest_attempts((), by_partition, status.attempts)
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
    return ttl - (now - status.completion_time).total_seconds()


def needs_plan(status: WorkflowStatus, jobs: Sequence[JobFacts]) -> bool:
    """True when the partitioner succeeded and its plan has not been read into status yet."""
    if get_condition(status.conditions, ConditionType.PARTITIONED) is not None:
        return False
    return any(j.role == c.ROLE_PARTITIONER and j.state is JobState.SUCCEEDED for j in jobs)


def plan(spec: WorkflowSpec, status: WorkflowStatus, obs: Observed) -> Plan:
    new = status.model_copy(deep=True)
    new.observed_generation = obs.generation
    new.start_time = new.start_time or obs.now
    # The reconciler plans only once it has read the Secret and reached the storage it needs.
    new.conditions = remove_condition(new.conditions, ConditionType.BLOCKED)
    out = Plan(status=new)
    jobs = JobGroups(obs.jobs)
    _replication_mode(out, spec, jobs)
    _redrive(out, spec, obs, jobs=jobs)
    if get_condition(new.conditions, ConditionType.PARTITIONED) is None:
        _partition_stage(out, spec, obs, jobs=jobs.of(c.ROLE_PARTITIONER))
    if get_condition(new.conditions, ConditionType.PARTITIONED) is not None:
        if spec.replication is not None:
            rs = new.replication = new.replication or ReplicationStatus()
            rs.mode = rs.mode or spec.replication.mode
        _stages(out, spec, obs, book=ledger.build(spec, new, obs, jobs=jobs))
        # Written by this pass's status patch, which the reconciler sends before any delete.
        keep = 0 if new.phase in TERMINAL else obs.kept_while_running
        done = deletable(spec, new, obs.jobs, keep=keep)
        out.deletes = done[:MAX_DELETES_PER_PASS]
        if len(done) > MAX_DELETES_PER_PASS:
            out.come_back_within(CAPPED_REQUEUE_SECONDS)
    return _finish(out, spec, status, obs=obs, active=jobs.active)


def _replication_mode(out: Plan, spec: WorkflowSpec, jobs: JobGroups) -> None:
    """A replication mode changed since the records were made (perPartition to afterAll is how a
    user gets deleteSync): a partition's index and the run-wide copy's 0 are different units, so
    the records start over, and a unit that already has Jobs in the new mode (from an earlier
    switch) starts past them."""
    rs = out.status.replication
    if spec.replication is None or rs is None or rs.mode == spec.replication.mode:
        return
    if rs.mode is not None:
        units = units_for(spec.replication.mode)
        mine = jobs.of(units.role)
        earlier = {unit for job in mine if (unit := units.unit_of(job)) is not None}
        budget = Budget(spec.retry, out.status.redrive.count)
        rs.attempts = fresh_attempts(mine, units.unit_of, attempts={}, units=earlier, budget=budget)
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


def _redrive(out: Plan, spec: WorkflowSpec, obs: Observed, *, jobs: JobGroups) -> None:
    """A new redrive token on a finished workflow re-runs what failed (partitions, replication)
    with fresh attempts; on a Succeeded workflow with replication, it re-runs the replication,
    which restores replicas deleted or damaged since (protection from deletion)."""
    st = out.status
    if not obs.redrive_token or obs.redrive_token == st.redrive.last_token:
        return
    st.redrive.last_token = obs.redrive_token
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
    st.attempts = fresh_attempts(
        jobs.of(c.ROLE_PARTITION), by_partition, attempts=st.attempts, units=indexsets.expand(failed), budget=budget
    )
    # Partitions that failed, and those a failed run never finished (never started, or stopped at
    # the progress deadline), run again: the winners change, so the manifest is written anew.
    rerun = bool(failed) or st.partitions.succeeded < st.partitions.total
    if rerun:
        st.manifest = ""
    what = [f"failed partitions {failed}"] if failed else []
    reduce_failed = st.reduce is not None and st.reduce.phase == "Failed"
    if spec.reduce is not None and (rerun or reduce_failed):
        rerun_reduce(st, jobs.of(c.ROLE_REDUCE), budget)
        what.append("the reduce step" + (" on the new manifest" if rerun else ""))
    what += _redrive_replication(out, spec, jobs, budget=budget, map_failed=rerun)
    out.events.append(
        Event(
            "Normal",
            Reason.REDRIVEN,
            f"redrive #{st.redrive.count}: re-running {', '.join(what) or 'partitions never started'}",
        )
    )


def _redrive_replication(
    out: Plan, spec: WorkflowSpec, jobs: JobGroups, *, budget: Budget, map_failed: bool
) -> list[str]:
    """What a redrive re-runs of replication: what failed; on a run where nothing failed,
    everything (restoring replicas deleted or damaged since)."""
    st, rs = out.status, out.status.replication
    if spec.replication is None or rs is None:
        return []
    units = units_for(spec.replication.mode)
    replication_failed = bool(rs.failed_indexes)
    again = indexsets.expand(rs.failed_indexes)
    if not map_failed and not replication_failed:
        again |= indexsets.expand(rs.replicated_indexes)  # a Succeeded run: copy everything again
    if units.whole_run:
        # Always from a fresh attempt of the round: the copy reads the manifest and the reduce
        # step's outputs, which this redrive may change, and gets a whole maxAttempts.
        again = {0}
    if units.whole_run or (not map_failed and not replication_failed):
        rs.objects = rs.bytes = rs.skipped = rs.deleted = 0
        st.conditions = remove_condition(st.conditions, ConditionType.REPLICATED)
    rs.attempts = fresh_attempts(jobs.of(units.role), units.unit_of, attempts=rs.attempts, units=again, budget=budget)
    rs.replicated_indexes = indexsets.compress(indexsets.expand(rs.replicated_indexes) - again)
    # What failed is being retried: its failures, and the deadline, count from now.
    rs.failed_indexes, rs.failed, rs.start_time = "", 0, None
    st.conditions = remove_condition(st.conditions, ConditionType.REPLICATION_LATE)
    if not again:
        return []
    return ["the run-wide replication" if units.whole_run else f"replication of partitions {indexsets.compress(again)}"]


def _partition_stage(out: Plan, spec: WorkflowSpec, obs: Observed, *, jobs: Sequence[JobFacts]) -> None:
    st = out.status
    # After a redrive of a failed partitioner, only a newer attempt counts.
    current = max(jobs, key=lambda j: j.attempt, default=None)
    wanted_attempt = st.redrive.count + 1
    if obs.plan is not None and current is not None and current.state is JobState.SUCCEEDED:
        _read_plan(out, spec, obs, read=obs.plan)
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
        out.fail(Reason.PARTITIONER_FAILED, f"partitioner Job {current.name} failed: {current.message}", obs.now)
    else:
        st.phase = "Partitioning"


def _read_plan(out: Plan, spec: WorkflowSpec, obs: Observed, *, read: PlanRead) -> None:
    st = out.status
    if read.partition_count is None:
        out.fail(read.error_reason or Reason.INVALID_PLAN, read.error_message, obs.now)
        return
    if read.partition_count == 0:
        where = f"under s3://{spec.input.bucket}/{spec.input.prefix}" if spec.input.bucket else "in input.items"
        out.fail(Reason.NO_PARTITIONS, f"the partitioner found no input items {where}", obs.now)
        return
    st.partitions.total = read.partition_count
    out.hold(ConditionType.PARTITIONED, Reason.PLAN_READ, f"{read.partition_count} partitions", now=obs.now)
    out.events.append(Event("Normal", Reason.PARTITIONED, f"plan has {read.partition_count} partitions"))


def _stages(out: Plan, spec: WorkflowSpec, obs: Observed, *, book: Ledger) -> None:
    st = out.status
    fanned_out = _map_stage(out, spec, obs, book=book)
    # A failed run still indexes what succeeded (like ResultWriter), once nothing runs any more.
    if (fanned_out or (st.phase == "Failed" and not book.partitions.active)) and not st.manifest:
        out.manifest = sorted(book.winners.items())
    manifest_written = bool(st.manifest) or out.manifest is not None
    reduced = book.reduce is None or reduce_stage(
        out, spec, obs, progress=book.reduce, ready=fanned_out and manifest_written
    )
    replicated = book.replication is None or replication_stage(
        out,
        spec,
        obs,
        progress=book.replication,
        inputs=Inputs(book.winners, ready=fanned_out and reduced, manifest_written=manifest_written),
    )
    if get_condition(st.conditions, ConditionType.FAILED) is not None:
        return
    if fanned_out and reduced and replicated:
        counts = st.partitions
        msg = f"{counts.succeeded} of {counts.total} partitions succeeded"
        if counts.failed:
            msg += f"; {counts.failed} failed within tolerance ({st.failed_indexes})"
        st.phase, st.message = "Succeeded", msg
        out.hold(ConditionType.SUCCEEDED, Reason.ALL_PARTITIONS_DONE, msg, now=obs.now)
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


def _map_stage(out: Plan, spec: WorkflowSpec, obs: Observed, *, book: Ledger) -> bool:
    """Starts partitions within maxConcurrency and the failure tolerance; records where they stand.
    True once every partition succeeded or failed for good."""
    st, progress = out.status, book.partitions
    total = st.partitions.total
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
    queued = {p for p in progress.active if (job := progress.current_job(p)) is not None and job.queued}
    running = (progress.active - queued) | {x.index for x in out.creates if isinstance(x, CreatePartition)}
    st.succeeded_indexes = indexsets.compress(progress.succeeded)
    st.failed_indexes = indexsets.compress(failed)
    st.running_indexes = indexsets.compress(running)
    st.queued_indexes = indexsets.compress(queued)
    st.attempts = progress.attempt_sets()
    st.partitions.succeeded = len(progress.succeeded)
    st.partitions.failed = len(failed)
    st.partitions.queued = len(queued)
    st.partitions.running = len(running)
    st.partitions.pending = total - len(progress.succeeded) - len(failed) - len(running) - len(queued)
    if progress.waiting:
        out.come_back_within(min(progress.waiting.values()))
    if breached and st.phase != "Failed":
        out.fail(
            Reason.FAILURE_TOLERANCE_EXCEEDED,
            f"{len(failed)} of {total} partitions failed ({indexsets.compress(failed)}), more than the "
            "tolerance allows; no new partitions start, running ones finish",
            obs.now,
        )
    return len(progress.succeeded) + len(failed) == total


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


def _finish(
    out: Plan, spec: WorkflowSpec, before: WorkflowStatus, *, obs: Observed, active: Sequence[JobFacts]
) -> Plan:
    st = out.status
    liveness.pods_blocked(out, obs, active=active)
    liveness.progress_deadline(out, spec, before, obs=obs, active=active)
    counts = st.partitions
    if counts.total:
        unstarted = counts.total - counts.succeeded - counts.failed - counts.running - counts.queued
        # A failed run starts nothing more: what it never started is not "pending".
        counts.not_run, counts.pending = (unstarted, 0) if st.phase == "Failed" else (0, unstarted)
    if st.phase == "Failed" and st.replication is not None:
        st.replication.pending = 0  # nothing will copy them: a redrive does
    blocked = get_condition(st.conditions, ConditionType.PODS_BLOCKED)
    # Blocked only when nothing runs: one child waiting among running ones (a busy cluster, a
    # scale-up) keeps its PodsBlocked condition and the run its phase.
    if blocked is not None and st.phase not in TERMINAL and st.phase != "Suspended" and liveness.all_waiting(active):
        # A run whose pods cannot be created or scheduled is not running: it says why, and goes
        # back to its phase by itself once the cause is fixed.
        st.phase, st.message = "Blocked", blocked.message
    elif before.phase == "Blocked" and st.phase not in TERMINAL:
        st.message = ""  # the cause is gone (a Secret, the storage, or the pods)
    queueing.queued(out, spec, obs, active=active)
    owed = logs.owed(spec, obs.jobs, obs.logs_kept)
    out.logs_owed = [j.name for j in owed]
    if len(owed) > logs.PER_PASS:
        out.come_back_within(CAPPED_REQUEUE_SECONDS)
    if st.phase in TERMINAL and st.completion_time is None:
        st.completion_time = obs.now
    if st.phase == "Suspended":
        out.hold(
            ConditionType.SUSPENDED,
            Reason.SUSPENDED,
            "spec.suspend is true: no new partition, reduce or replication Job starts",
            now=obs.now,
        )
    else:
        st.conditions = remove_condition(st.conditions, ConditionType.SUSPENDED)
    if st.phase != before.phase:
        kind: Literal["Normal", "Warning"] = "Warning" if st.phase in ("Failed", "Blocked") else "Normal"
        out.events.append(Event(kind, st.phase, st.message or f"phase {before.phase} -> {st.phase}"))
    return out
