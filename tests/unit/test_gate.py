"""Passes that stop before the planner's stages, decided purely: a refused spec fails the run until
it changes (and answers a redrive), and what the operator cannot reach blocks it, said once."""

from __future__ import annotations

import pytest

from paraflow.models import WorkflowStatus
from paraflow.planning import gate
from paraflow.planning.conditions import get_condition
from paraflow.reasons import ConditionType, Reason
from tests.unit.builders import T0

pytestmark = pytest.mark.unit

UNSAFE = gate.Problem(Reason.DESTINATION_IS_OUTPUT, "destination 'archive' is the output under another name")
NO_BUCKET = gate.Problem(Reason.STORAGE_UNAVAILABLE, "bucket 'processed' does not exist")


def test_a_refused_spec_fails_the_run_with_its_reason_and_says_so_once() -> None:
    first = gate.refused(WorkflowStatus(), UNSAFE, generation=1, redrive="", now=T0)
    assert (first.status.phase, first.status.message) == ("Failed", UNSAFE.message)
    failed = get_condition(first.status.conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == Reason.DESTINATION_IS_OUTPUT
    assert [(e.type, e.reason) for e in first.events] == [("Warning", Reason.DESTINATION_IS_OUTPUT)]
    again = gate.refused(first.status, UNSAFE, generation=1, redrive="", now=T0)
    assert again.status == first.status and again.events == []


def test_a_redrive_of_a_refused_spec_is_answered_with_why_and_remembered() -> None:
    refused = gate.refused(WorkflowStatus(), UNSAFE, generation=1, redrive="", now=T0).status
    answered = gate.refused(refused, UNSAFE, generation=1, redrive="tok-1", now=T0)
    assert answered.status.redrive.last_token == "tok-1"
    assert [e.reason for e in answered.events] == ["RedriveIgnored"]
    assert "fix the spec first" in answered.events[0].message


@pytest.mark.parametrize(
    ("generation", "redrive", "has_jobs", "due"),
    [(1, "", False, False), (2, "", False, True), (1, "new", False, True), (2, "", True, False)],
    ids=["unchanged", "spec-changed", "redriven", "something-ran"],
)
def test_a_refusal_is_checked_again_once_the_spec_changes_or_on_a_redrive_unless_something_ran(
    generation: int, redrive: str, has_jobs: bool, due: bool
) -> None:
    refused = gate.refused(WorkflowStatus(), UNSAFE, generation=1, redrive="", now=T0).status
    assert gate.recheck_due(refused, generation=generation, redrive=redrive, has_jobs=has_jobs) is due


def test_only_refusals_are_rechecked_not_a_run_that_failed() -> None:
    failed = gate.refused(
        WorkflowStatus(), gate.Problem("FailureToleranceExceeded", "x"), generation=1, redrive="", now=T0
    )
    assert not gate.recheck_due(failed.status, generation=2, redrive="", has_jobs=False)


def test_a_rechecked_spec_starts_the_run_from_pending_with_the_redrive_taken() -> None:
    status = gate.refused(WorkflowStatus(), UNSAFE, generation=1, redrive="", now=T0).status
    event = gate.rechecked(status, redrive="tok-2")
    assert (status.phase, status.message, status.redrive.last_token) == ("Pending", "", "tok-2")
    assert get_condition(status.conditions, ConditionType.FAILED) is None
    assert (event.type, event.reason) == ("Normal", "Rechecked")


def test_what_cannot_be_reached_blocks_a_run_said_once_and_retried_soon() -> None:
    running = WorkflowStatus(phase="Running")
    first = gate.blocked(running, running, NO_BUCKET, generation=1, now=T0)
    assert first.status.phase == "Blocked" and first.status.message == f"{NO_BUCKET.message}; retrying"
    cond = get_condition(first.status.conditions, ConditionType.BLOCKED)
    assert cond is not None and cond.reason == Reason.STORAGE_UNAVAILABLE
    assert [e.reason for e in first.events] == [Reason.STORAGE_UNAVAILABLE]
    assert first.requeue_after == gate.BLOCKED_RETRY_SECONDS
    again = gate.blocked(first.status, first.status, NO_BUCKET, generation=1, now=T0)
    assert again.events == []


def test_a_finished_run_blocked_on_storage_keeps_its_phase() -> None:
    done = WorkflowStatus(phase="Succeeded")
    assert gate.blocked(done, done, NO_BUCKET, generation=1, now=T0).status.phase == "Succeeded"


def test_a_finished_run_blocked_on_storage_keeps_the_message_that_says_how_it_ended() -> None:
    failed = WorkflowStatus(phase="Failed", message="3 of 10 partitions failed")
    blocked = gate.blocked(failed, failed, NO_BUCKET, generation=1, now=T0).status
    assert blocked.message == "3 of 10 partitions failed"
    assert get_condition(blocked.conditions, ConditionType.BLOCKED) is not None
