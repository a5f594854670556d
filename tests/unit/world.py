"""A small stand-in for the cluster and MinIO around the pure planner: it applies each pass's plan
the way the reconciler does (status written, manifest written, Jobs created) and lets a test say
how each created Job ends. Planner tests drive whole runs with it, pass after pass."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from paraflow.k8s import builders
from paraflow.k8s.builders import WorkflowRef
from paraflow.models import TERMINAL, WorkflowSpec, WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.planner import (
    CreatePartition,
    CreatePartitioner,
    CreateReduce,
    CreateReplication,
    JobFacts,
    JobState,
    Observed,
    Plan,
    PlanRead,
    ReplicationTally,
)
from paraflow.settings import Settings
from tests.unit.builders import T0

Create = CreatePartitioner | CreatePartition | CreateReduce | CreateReplication
# How a created Job ends: SUCCEEDED, FAILED, or ACTIVE (it runs until told otherwise).
Outcome = Callable[[Create], JobState]


WORKFLOW = WorkflowRef("wf", "ns", "uid-1")


def job_for(spec: WorkflowSpec, status: WorkflowStatus, action: Create, state: JobState, at: dt.datetime) -> JobFacts:
    """The Job the reconciler creates for ``action`` in a pass that wrote ``status``, built as it
    builds it, as the Job watch sees it in ``state``: an active one with its pod running."""
    body = builders.child_job(WORKFLOW, spec, action, partitioner_attempt=status.redrive.count + 1, settings=Settings())
    facts = builders.job_facts(body)
    assert facts is not None
    finished = None if state is JobState.ACTIVE else at
    return replace(facts, state=state, finished_at=finished, created_at=at, stalled=False)


@dataclass
class World:
    spec: WorkflowSpec
    partitions: int
    outcome: Outcome = lambda _: JobState.SUCCEEDED
    status: WorkflowStatus = field(default_factory=WorkflowStatus)
    jobs: dict[str, JobFacts] = field(default_factory=dict)
    now: dt.datetime = T0
    redrive_token: str = ""
    passes: int = 0
    events: list[planner.Event] = field(default_factory=list)
    # Jobs whose pods' logs the reconciler stored, as it does before anything is deleted.
    logs_kept: set[str] = field(default_factory=set)

    def observe(self) -> Observed:
        jobs = list(self.jobs.values())
        reports = {
            j.name: ReplicationTally(copied=1, bytes=10) for j in planner.needs_reports(self.spec, self.status, jobs)
        }
        reduce_attempt = planner.needs_reduce_record(self.spec, self.status, jobs)
        return Observed(
            jobs=jobs,
            generation=1,
            now=self.now,
            uid="uid-1",
            redrive_token=self.redrive_token,
            plan=PlanRead(partition_count=self.partitions) if planner.needs_plan(self.status, jobs) else None,
            reports=reports,
            reduce_records={} if reduce_attempt is None else {reduce_attempt: ""},
            logs_kept=frozenset(self.logs_kept),
        )

    def step(self, seconds: float = 1.0) -> Plan:
        """One pass, applied; then the clock moves on."""
        result = planner.plan(self.spec, self.status, self.observe())
        if result.manifest is not None:
            result.status.manifest = "s3://out/_paraflow/uid-1/manifest.json"
        for action in result.creates:
            job = job_for(self.spec, result.status, action, self.outcome(action), self.now)
            self.jobs.setdefault(job.name, job)
        self.logs_kept.update(result.keep_logs)
        for name in result.deletes:
            self.jobs.pop(name, None)
        self.status = result.status
        self.events += result.events
        self.passes += 1
        self.now += dt.timedelta(seconds=seconds)
        return result

    def run(self, passes: int = 200, seconds: float = 1.0) -> WorkflowStatus:
        """Passes until the run is finished and settled, at most ``passes``."""
        for _ in range(passes):
            self.step(seconds)
            if self.status.phase in TERMINAL and planner.settled(
                self.spec,
                self.status,
                list(self.jobs.values()),
                redrive_token=self.redrive_token,
                logs_kept=self.logs_kept,
            ):
                break
        return self.status

    def finish_active(self, state: JobState = JobState.SUCCEEDED) -> None:
        for name, job in self.jobs.items():
            if job.state is JobState.ACTIVE:
                self.jobs[name] = replace(job, state=state, finished_at=self.now)

    def edit(self, **changes: Any) -> bool:
        """A spec edit, as ``kubectl patch`` makes it (dotted keys reach into the spec); False, and
        nothing changed, when admission would refuse the result."""
        body = self.spec.model_dump(by_alias=True, exclude_none=True)
        for dotted, value in changes.items():
            *path, last = dotted.split(".")
            node = body
            for key in path:
                node = node.setdefault(key, {})
            node[last] = value
        try:
            self.spec = WorkflowSpec.model_validate(body)
        except ValidationError:
            return False
        return True

    def redrive(self, token: str) -> None:
        self.redrive_token = token
