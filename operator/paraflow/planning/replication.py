"""Replication planning: which units copy what, accounting their reports, scheduling them, and
deciding when replication is done, late, or failed.

The replication mode is decided in one place, :func:`units_for`: perPartition replicates each
succeeded partition's outputs as its own unit (the partition's index), afterAll the whole run as
one unit, 0, once the map (and reduce step) is done and the manifest written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from paraflow import constants as c
from paraflow.models import ReplicationSpec, ReplicationStatus, WorkflowSpec, WorkflowStatus
from paraflow.planning import indexsets
from paraflow.planning.actions import CreateReplication, Event, Plan
from paraflow.planning.conditions import get_condition
from paraflow.planning.observed import Observed, ReplicationTally
from paraflow.planning.tracking import Budget, JobFacts, JobState, Progress, schedule
from paraflow.reasons import ConditionType, Reason


@dataclass(frozen=True)
class PerPartition:
    """Each succeeded partition's outputs, as soon as it succeeds."""

    role: str = c.ROLE_REPLICATION
    whole_run: bool = False

    def unit_of(self, job: JobFacts) -> int | None:
        return job.partition if job.role == self.role else None

    def wanted(self, winners: Mapping[int, int], *, ready: bool, manifest_written: bool) -> list[int]:
        return sorted(winners)

    def create(self, unit: int, attempt: int, winners: Mapping[int, int], *, reduced: int | None) -> CreateReplication:
        return CreateReplication(unit, attempt, winners.get(unit, 0))

    def count(self, rs: ReplicationStatus, progress: Progress, winners: Mapping[int, int]) -> int:
        """Fills the partition counts; returns how many units there are to replicate."""
        rs.partitions = len(progress.succeeded & winners.keys())
        rs.pending = max(0, len(winners) - len(progress.succeeded) - len(progress.failed))
        return len(winners)

    def failed_units(self, failed: set[int]) -> str:
        return f"partition(s) {indexsets.compress(failed)}"


@dataclass(frozen=True)
class RunWide:
    """The whole run's outputs (and the reduce step's) in one unit, after the manifest: the only
    mode that can delete replicas whose output left the run (deleteSync)."""

    role: str = c.ROLE_REPLICATION_ALL
    whole_run: bool = True

    def unit_of(self, job: JobFacts) -> int | None:
        return 0 if job.role == self.role else None

    def wanted(self, winners: Mapping[int, int], *, ready: bool, manifest_written: bool) -> list[int]:
        # The copy reads the manifest: not before it is written (this very pass counts: the
        # reconciler writes it before any Job is created).
        return [0] if ready and manifest_written else []

    def create(self, unit: int, attempt: int, winners: Mapping[int, int], *, reduced: int | None) -> CreateReplication:
        return CreateReplication(unit, attempt, 0, reduced)

    def count(self, rs: ReplicationStatus, progress: Progress, winners: Mapping[int, int]) -> int:
        rs.partitions = len(winners) if progress.succeeded else 0
        rs.pending = 0 if progress.failed else len(winners) - rs.partitions
        return 1

    def failed_units(self, failed: set[int]) -> str:
        return "the run"


Units = PerPartition | RunWide


def units_for(mode: Literal["perPartition", "afterAll"]) -> Units:
    return RunWide() if mode == "afterAll" else PerPartition()


def needs_reports(spec: WorkflowSpec, status: WorkflowStatus, jobs: Sequence[JobFacts]) -> list[JobFacts]:
    """Finished replication Jobs whose outcome status does not hold yet: their reports are needed."""
    if spec.replication is None:
        return []
    rs = status.replication or ReplicationStatus()
    budget = Budget(spec.retry, status.redrive.count)
    accounted = indexsets.expand(rs.replicated_indexes) | indexsets.expand(rs.failed_indexes)
    unit_of = units_for(spec.replication.mode).unit_of
    wanted = []
    for job in jobs:
        unit = unit_of(job)
        if unit is None or unit in accounted:
            continue
        if job.state is JobState.SUCCEEDED or (job.state is JobState.FAILED and job.attempt >= budget.attempts):
            wanted.append(job)
    return wanted


@dataclass(frozen=True)
class Inputs:
    """What replication waits on from the stages before it."""

    winners: Mapping[int, int]  # each succeeded partition's winning attempt
    ready: bool  # the map and the reduce step are done
    manifest_written: bool  # in status, or by this pass


def replication_stage(out: Plan, spec: WorkflowSpec, obs: Observed, *, progress: Progress, inputs: Inputs) -> bool:
    """Plans replication Jobs and accounts finished ones; True when every output is replicated."""
    rspec, rs = spec.replication, out.status.replication
    assert rspec is not None and rs is not None  # the ledger tracks replication only then
    units = units_for(rspec.mode)
    _account_reports(out, rs, progress, reports=obs.reports or {})
    if out.status.phase != "Failed" and not spec.suspend:
        _start(out, spec, obs, progress=progress, inputs=inputs)
    if progress.waiting:
        out.come_back_within(min(progress.waiting.values()))
    rs.replicated_indexes = indexsets.compress(progress.succeeded)
    rs.failed_indexes = indexsets.compress(progress.failed)
    rs.attempts = progress.attempt_sets()
    total = units.count(rs, progress, inputs.winners)
    if progress.failed:
        if out.status.phase != "Failed":
            out.fail(
                Reason.REPLICATION_FAILED,
                f"replication failed for {units.failed_units(progress.failed)} after its last attempt; "
                "a redrive retries it",
                obs.now,
            )
        return False
    _deadline(out, rspec, obs)
    complete = inputs.ready and len(progress.succeeded) == total
    if complete:
        _replicated(out, rspec, rs, obs=obs)
    return complete


def _account_reports(
    out: Plan, rs: ReplicationStatus, progress: Progress, *, reports: Mapping[str, ReplicationTally]
) -> None:
    """Adds the reports of the current attempts that finished since status last counted them."""
    accounted = indexsets.expand(rs.replicated_indexes) | indexsets.expand(rs.failed_indexes)
    for (unit, attempt), job in sorted(progress.jobs.items()):
        tally = reports.get(job.name)
        if tally is None or unit in accounted or attempt != progress.latest.get(unit):
            continue
        # What a failed Job copied before it failed is there too: counted like a success's.
        rs.objects += tally.copied
        rs.bytes += tally.bytes
        rs.skipped += tally.skipped
        rs.deleted += tally.deleted
        if job.state is not JobState.SUCCEEDED:
            rs.failed += tally.failed
            out.events.append(
                Event(
                    "Warning",
                    Reason.REPLICATION_FAILED,
                    f"replication Job {job.name} failed for good: {tally.failed} object(s) not "
                    f"copied; first: {tally.first_failure}",
                )
            )
        elif tally.deleted:
            unlisted = tally.deleted - len(tally.deletions)
            more = f" and {unlisted} more" if unlisted > 0 else ""
            out.events.append(
                Event(
                    "Normal",
                    Reason.REPLICAS_DELETED,
                    f"deleteSync: {job.name} deleted {tally.deleted} replica(s) whose output left the run: "
                    f"{', '.join(tally.deletions)}{more} (every key listed in {tally.reports})",
                )
            )


def _start(out: Plan, spec: WorkflowSpec, obs: Observed, *, progress: Progress, inputs: Inputs) -> None:
    rspec, st = spec.replication, out.status
    assert rspec is not None and st.replication is not None
    units = units_for(rspec.mode)
    wanted = units.wanted(inputs.winners, ready=inputs.ready, manifest_written=inputs.manifest_written)
    limit = rspec.max_concurrency or spec.max_concurrency
    slots = out.room(limit - len(progress.active), obs.max_creates)
    reduced = st.reduce.attempt if st.reduce is not None and st.reduce.phase == "Succeeded" else None
    for unit, attempt in schedule(progress, wanted, slots):
        st.replication.start_time = st.replication.start_time or obs.now
        out.creates.append(units.create(unit, attempt, inputs.winners, reduced=reduced))


def _deadline(out: Plan, rspec: ReplicationSpec, obs: Observed) -> None:
    rs = out.status.replication
    if rspec.deadline_seconds is None or rs is None or rs.start_time is None:
        return
    if get_condition(out.status.conditions, ConditionType.REPLICATION_LATE) is not None:
        return
    late = (obs.now - rs.start_time).total_seconds() - rspec.deadline_seconds
    if late < 0:
        out.come_back_within(-late)
        return
    message = f"replication has run longer than its deadline of {rspec.deadline_seconds}s"
    out.hold(ConditionType.REPLICATION_LATE, Reason.DEADLINE_EXCEEDED, message, now=obs.now)
    out.events.append(Event("Warning", Reason.REPLICATION_DEADLINE_EXCEEDED, message))


def _replicated(out: Plan, rspec: ReplicationSpec, rs: ReplicationStatus, *, obs: Observed) -> None:
    message = (
        f"{rs.objects} objects ({rs.bytes} bytes) copied, {rs.skipped} already there, to "
        f"{len(rspec.destinations)} destination(s)"
    )
    if rspec.delete_sync:
        message += f"; {rs.deleted} replica(s) deleted (deleteSync)"
    out.hold(ConditionType.REPLICATED, Reason.ALL_REPLICATED, message, now=obs.now)
