"""The passes that stop before the planner's stages: a spec refused before anything ran (invalid,
or unsafe on the storage as it really is), and a run blocked on what the operator cannot reach
(its Secret, MinIO, a bucket). What they do to the status, its conditions and Events is decided
here, pure, like every other transition; the reconciler only says what it observed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from paraflow.models import TERMINAL, WorkflowStatus
from paraflow.planning.actions import Event, Plan
from paraflow.planning.conditions import get_condition, remove_condition
from paraflow.reasons import REFUSALS, ConditionType, Reason

BLOCKED_RETRY_SECONDS: Final = 10.0


@dataclass(frozen=True)
class Problem:
    reason: Reason
    message: str


def invalid_spec(message: str) -> Problem:
    return Problem(Reason.INVALID_SPEC, message)


def refused(before: WorkflowStatus, problem: Problem, *, generation: int, redrive: str, now: dt.datetime) -> Plan:
    """The spec cannot run as written: Failed, with the reason, until the spec changes. A redrive
    asked meanwhile is answered (refused, and why), so `paraflow redrive` can say so."""
    out = Plan(status=before.model_copy(deep=True))
    status = out.status
    status.observed_generation = generation
    out.fail(problem.reason, problem.message, now)
    if get_condition(before.conditions, ConditionType.FAILED) != get_condition(status.conditions, ConditionType.FAILED):
        out.events.append(Event("Warning", problem.reason, problem.message))
    if redrive and redrive != before.redrive.last_token:
        status.redrive.last_token = redrive
        out.events.append(
            Event(
                "Warning", Reason.REDRIVE_IGNORED, f"redrive {redrive!r} ignored: fix the spec first: {problem.message}"
            )
        )
    return out


def recheck_due(before: WorkflowStatus, *, generation: int, redrive: str, has_jobs: bool) -> bool:
    """A spec refused before anything ran is checked again once it changed, or on a redrive."""
    failed = get_condition(before.conditions, ConditionType.FAILED)
    if failed is None or failed.reason not in REFUSALS or has_jobs:
        return False
    return generation != before.observed_generation or redrive != before.redrive.last_token


def rechecked(status: WorkflowStatus, *, redrive: str) -> Event:
    """The refused spec passes the checks now: the run starts from the beginning."""
    status.phase, status.message, status.completion_time = "Pending", "", None
    status.conditions = remove_condition(status.conditions, ConditionType.FAILED)
    status.redrive.last_token = redrive  # this redrive, if any, is what started it
    return Event("Normal", Reason.RECHECKED, "the spec passes the checks now: starting the run")


def blocked(
    before: WorkflowStatus, status: WorkflowStatus, problem: Problem, *, generation: int, now: dt.datetime
) -> Plan:
    """The run cannot go on until its Secret, MinIO or a bucket is there: Blocked (a finished run
    keeps its phase), said once, retried every BLOCKED_RETRY_SECONDS."""
    message = f"{problem.message}; retrying"
    out = Plan(status=status.model_copy(deep=True), requeue_after=BLOCKED_RETRY_SECONDS)
    st = out.status
    st.observed_generation = generation
    if st.phase not in TERMINAL:
        # A finished run keeps its phase and the message that says how it ended; the condition
        # alone tells what it cannot reach now.
        st.phase, st.message = "Blocked", message
    out.hold(ConditionType.BLOCKED, problem.reason, message, now=now)
    if st != before:
        out.events.append(Event("Warning", problem.reason, message))
    return out
