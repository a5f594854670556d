"""The pass's ledger: where every partition, the reduce step and every replication unit stands,
tracked once from the Jobs observed and the sets already in status, before any stage decides.

Stages read the ledger and never track again, so data flows one way: gather -> ledger -> stages
-> plan. It is built after the status corrections a pass starts with (a replication mode
change, a redrive), which move attempt sets, and before anything is scheduled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from paraflow import constants as c
from paraflow.models import ReduceStatus, WorkflowSpec, WorkflowStatus
from paraflow.planning import reduce
from paraflow.planning.observed import Observed
from paraflow.planning.replication import units_for
from paraflow.planning.tracking import Budget, JobFacts, JobState, Progress, attempt_sets, track


class JobGroups:
    """The observed Jobs grouped by role, and the active ones, in one walk: each stage looks at
    its own group. Late in a run that keeps its Jobs a pass sees every Job made so far, and each
    walk over them all is a measurable part of the operator's CPU."""

    def __init__(self, jobs: Iterable[JobFacts]) -> None:
        groups: dict[str, list[JobFacts]] = {}
        active: list[JobFacts] = []
        active_state = JobState.ACTIVE  # a local: an Enum member's lookup on its class is slow
        for job in jobs:
            group = groups.get(job.role)
            if group is None:
                group = groups[job.role] = []
            group.append(job)
            if job.state is active_state:
                active.append(job)
        self._groups, self.active = groups, active

    def of(self, role: str) -> Sequence[JobFacts]:
        return self._groups.get(role, [])


def by_partition(job: JobFacts) -> int | None:
    return job.partition if job.role == c.ROLE_PARTITION else None


@dataclass(frozen=True)
class Ledger:
    partitions: Progress
    reduce: Progress | None
    replication: Progress | None

    @cached_property
    def winners(self) -> dict[int, int]:
        """Each succeeded partition's winning attempt."""
        return {p: self.partitions.latest.get(p, 1) for p in self.partitions.succeeded}


def build(spec: WorkflowSpec, status: WorkflowStatus, obs: Observed, *, jobs: JobGroups) -> Ledger:
    budget = Budget(spec.retry, status.redrive.count)
    total = status.partitions.total

    def planned_partition(job: JobFacts) -> int | None:
        """Its partition, if the plan has it (a Job of an earlier, larger plan is not counted)."""
        return job.partition if job.partition is not None and job.partition < total else None

    partitions = track(
        jobs.of(c.ROLE_PARTITION),
        planned_partition,
        attempts=status.attempts,
        succeeded=status.succeeded_indexes,
        failed=status.failed_indexes,
        budget=budget,
        seed=obs.uid,
        now=obs.now,
    )
    reduced = None
    if spec.reduce is not None:
        rd = status.reduce or ReduceStatus()
        reduced = track(
            [reduce.as_recorded(j, obs.reduce_records or {}) for j in jobs.of(c.ROLE_REDUCE)],
            reduce.the_reduce_step,
            attempts=attempt_sets({0: rd.attempt}),
            succeeded="0" if rd.phase == "Succeeded" else "",
            failed="0" if rd.phase == "Failed" else "",
            budget=budget,
            seed=f"{obs.uid}/reduce",
            now=obs.now,
        )
    replication = None
    if spec.replication is not None and status.replication is not None:
        rs, units = status.replication, units_for(spec.replication.mode)
        replication = track(
            jobs.of(units.role),
            units.unit_of,
            attempts=rs.attempts,
            succeeded=rs.replicated_indexes,
            failed=rs.failed_indexes,
            budget=budget,
            seed=f"{obs.uid}/replication",
            now=obs.now,
        )
    return Ledger(partitions, reduced, replication)
