"""The optional reduce step: one unit, 0, run after the map is done and its manifest written
(the step reads it); its success counts once its record is there and valid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from paraflow import constants as c
from paraflow.models import ReduceStatus, WorkflowSpec, WorkflowStatus
from paraflow.planning.actions import CreateReduce, Event, Plan
from paraflow.planning.conditions import remove_condition
from paraflow.planning.observed import Observed
from paraflow.planning.tracking import Budget, JobFacts, JobState, Progress, attempt_sets, fresh_attempts, schedule
from paraflow.reasons import ConditionType, Reason
from paraflow_worker import contract


def the_reduce_step(job: JobFacts) -> int | None:
    return 0 if job.role == c.ROLE_REDUCE else None


def needs_reduce_record(spec: WorkflowSpec, status: WorkflowStatus, jobs: Sequence[JobFacts]) -> int | None:
    """The attempt of a succeeded reduce Job whose record must be checked before it counts."""
    if spec.reduce is None or (status.reduce is not None and status.reduce.phase == "Succeeded"):
        return None
    done = [j.attempt for j in jobs if j.role == c.ROLE_REDUCE and j.state is JobState.SUCCEEDED]
    return max(done, default=None)


def as_recorded(job: JobFacts, records: Mapping[int, str]) -> JobFacts:
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


def reduce_stage(out: Plan, spec: WorkflowSpec, obs: Observed, *, progress: Progress, ready: bool) -> bool:
    """Runs the reduce step once ``ready`` (the map done, its manifest written); True when it
    succeeded. Failing for good fails the run."""
    st = out.status
    rd = st.reduce = (st.reduce or ReduceStatus()).model_copy(deep=True)
    rd.attempt = progress.latest.get(0, rd.attempt)
    if progress.succeeded:
        if rd.phase != "Succeeded":
            _succeeded(out, spec, obs, rd=rd)
        return True
    if progress.failed:
        if rd.phase != "Failed":
            rd.phase = "Failed"
            _failed(out, progress.current_job(0), obs)
        return False
    if ready and st.phase != "Failed" and not spec.suspend:
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
    if progress.waiting:
        out.come_back_within(min(progress.waiting.values()))
    return False


def _succeeded(out: Plan, spec: WorkflowSpec, obs: Observed, *, rd: ReduceStatus) -> None:
    rd.phase = "Succeeded"
    where = contract.reduce_output_prefix(spec.output.prefix, obs.uid, rd.attempt)
    rd.output_prefix = f"s3://{spec.output.bucket}/{where}"
    message = f"attempt {rd.attempt} succeeded; its outputs are under {rd.output_prefix}"
    out.hold(ConditionType.REDUCED, Reason.REDUCE_SUCCEEDED, message, now=obs.now)
    out.events.append(Event("Normal", Reason.REDUCED, f"reduce step {message}"))


def _failed(out: Plan, job: JobFacts | None, obs: Observed) -> None:
    if out.status.phase == "Failed":
        return
    why = f"Job {job.name}: {job.message}" if job is not None else "its Job is gone"
    out.fail(
        job.reason if job is not None and job.reason is not None else Reason.REDUCE_FAILED,
        f"the reduce step failed after its last attempt ({why}); the map's outputs and manifest are "
        "kept, and a redrive runs the reduce step again",
        obs.now,
    )


def rerun_reduce(st: WorkflowStatus, jobs: Sequence[JobFacts], budget: Budget) -> None:
    """The reduce step starts again from a fresh attempt, after the map's new manifest."""
    previous = st.reduce or ReduceStatus()
    fresh = fresh_attempts(
        jobs, the_reduce_step, attempts=attempt_sets({0: previous.attempt}), units={0}, budget=budget
    )
    st.reduce = ReduceStatus(attempt=max((int(a) for a in fresh), default=1))
    st.conditions = remove_condition(st.conditions, ConditionType.REDUCED)
