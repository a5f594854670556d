"""A schedule's pure decisions: which slots start, wait, are missed or skipped under each
concurrency policy, what the history limits delete, and that a slot's run has one name."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow.planning.schedule import Run, ScheduleObserved, SchedulePlan, ScheduleRef, plan, run_name
from paraflow.reasons import Reason
from paraflow.schedule_models import ScheduleSpec, ScheduleStatus
from tests.unit.builders import spec_dict

pytestmark = pytest.mark.unit

CREATED = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
REF = ScheduleRef("daily", "ns", "sched-uid")


def schedule(**fields: Any) -> ScheduleSpec:
    body: dict[str, Any] = {
        "schedule": "0 * * * *",
        "workflowTemplate": {
            "spec": spec_dict(**{"input.prefix": 'logs/{{ scheduledTime | date "%Y/%m/%d/%H" }}/'}),
        },
    }
    body.update(fields)
    return ScheduleSpec.model_validate(body)


def at(hours: float) -> dt.datetime:
    return CREATED + dt.timedelta(hours=hours)


def observe(now: dt.datetime, *runs: Run) -> ScheduleObserved:
    return ScheduleObserved(ref=REF, generation=1, created=CREATED, now=now, runs=runs)


def run(hour: int, phase: str = "Running", *, reported: bool = False) -> Run:
    slot = at(hour)
    return Run(run_name("daily", slot), f"uid-{hour}", slot, phase, finished_at=slot, reported=reported)


def slots_of(result: SchedulePlan) -> list[str]:
    return [body["metadata"]["annotations"]["paraflow.dev/scheduled-time"] for body in result.creates]


def test_a_slot_that_came_starts_its_run_with_the_slot_filled_in() -> None:
    result = plan(schedule(), ScheduleStatus(), observe(at(1) + dt.timedelta(seconds=5)))
    assert slots_of(result) == ["2026-12-01T01:00:00Z"]
    body = result.creates[0]
    assert body["metadata"]["name"] == f"daily-{int(at(1).timestamp()) // 60}"
    assert body["spec"]["input"]["prefix"] == "logs/2026/12/01/01/"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "sched-uid"
    assert result.status.last_schedule_time == at(1)
    assert result.status.next_schedule_time == at(2)
    assert result.requeue_after == pytest.approx(3600 - 5)


def test_a_slot_whose_run_exists_is_never_started_again() -> None:
    """Another replica (or this one before a restart) started it: its name says so."""
    result = plan(schedule(), ScheduleStatus(), observe(at(1) + dt.timedelta(seconds=5), run(1)))
    assert result.creates == []
    assert result.status.last_schedule_time == at(1)
    assert result.status.active == [run_name("daily", at(1))]


def test_forbid_waits_while_a_run_is_active_and_starts_the_slot_once_it_ended() -> None:
    spec = schedule(concurrencyPolicy="Forbid")
    waiting = plan(spec, ScheduleStatus(last_schedule_time=at(1)), observe(at(2), run(1)))
    assert waiting.creates == [] and "waits for run" in waiting.status.message
    assert waiting.status.last_schedule_time == at(1), "the slot stays undecided while it waits"
    later = plan(spec, waiting.status, observe(at(2.5), run(1, "Succeeded")))
    assert slots_of(later) == ["2026-12-01T02:00:00Z"]


def test_forbid_misses_a_waiting_slot_once_its_starting_deadline_passed() -> None:
    spec = schedule(concurrencyPolicy="Forbid", startingDeadlineSeconds=600)
    result = plan(spec, ScheduleStatus(last_schedule_time=at(1)), observe(at(2.5), run(1, "Succeeded")))
    assert result.creates == []
    assert [e.reason for e in result.events] == [Reason.SLOTS_MISSED]
    assert "2026-12-01T02:00:00Z" in result.events[0].message
    assert result.status.last_schedule_time == at(2)


def test_allow_starts_every_due_slot_beside_an_active_run() -> None:
    spec = schedule(concurrencyPolicy="Allow")
    result = plan(spec, ScheduleStatus(last_schedule_time=at(1)), observe(at(3), run(1)))
    assert slots_of(result) == ["2026-12-01T02:00:00Z", "2026-12-01T03:00:00Z"]
    assert result.status.active_runs == 3


def test_replace_deletes_the_active_run_and_starts_only_the_newest_slot() -> None:
    spec = schedule(concurrencyPolicy="Replace")
    result = plan(spec, ScheduleStatus(last_schedule_time=at(1)), observe(at(3), run(1)))
    assert slots_of(result) == ["2026-12-01T03:00:00Z"]
    assert [r.name for r in result.deletes] == [run_name("daily", at(1))]
    reasons = [e.reason for e in result.events]
    assert Reason.RUN_REPLACED in reasons and Reason.SLOTS_MISSED in reasons, "the skipped 02:00 is said"
    assert result.status.last_schedule_time == at(3)


def test_replace_never_starts_a_slot_older_than_a_run_that_exists() -> None:
    """A status read that lags the runs (the last pass's write not seen yet) must not make Replace
    delete the newest run for a slot it already skipped."""
    spec = schedule(concurrencyPolicy="Replace")
    result = plan(
        spec,
        ScheduleStatus(last_schedule_time=at(1)),
        observe(at(3) + dt.timedelta(seconds=1), run(1, "Succeeded", reported=True), run(3)),
    )
    assert result.creates == [] and result.deletes == []
    assert result.status.last_schedule_time == at(3)


def test_a_waiting_slot_holds_the_decided_time_even_when_a_later_slot_has_a_run() -> None:
    """Forbid: 02:00 waits for 01:00; 03:00 was triggered by hand. 02:00 must still run later."""
    spec = schedule(concurrencyPolicy="Forbid")
    result = plan(
        spec, ScheduleStatus(last_schedule_time=at(1)), observe(at(3) + dt.timedelta(seconds=1), run(1), run(3))
    )
    assert result.creates == [] and result.status.last_schedule_time == at(1)
    later = plan(spec, result.status, observe(at(3.5), run(1, "Succeeded"), run(3, "Succeeded")))
    assert slots_of(later) == ["2026-12-01T02:00:00Z"]


def test_a_hundred_and_more_active_runs_are_counted_and_the_oldest_hundred_listed() -> None:
    spec = schedule(schedule="* * * * *", concurrencyPolicy="Allow")
    busy = [
        Run(run_name("daily", CREATED + dt.timedelta(minutes=m)), f"u{m}", CREATED + dt.timedelta(minutes=m), "Running")
        for m in range(1, 121)
    ]
    result = plan(
        spec,
        ScheduleStatus(last_schedule_time=CREATED + dt.timedelta(minutes=120)),
        observe(CREATED + dt.timedelta(minutes=121, seconds=1), *busy),
    )
    assert result.status.active_runs == 121 and len(result.status.active) == 100
    assert result.status.active[0] == busy[0].name


def test_more_than_a_hundred_missed_slots_are_said_once() -> None:
    spec = schedule(schedule="* * * * *", concurrencyPolicy="Forbid")
    first = plan(spec, ScheduleStatus(last_schedule_time=at(0)), observe(at(5), run(0)))
    assert [e.reason for e in first.events] == [Reason.SLOTS_MISSED]
    again = plan(spec, first.status, observe(at(5) + dt.timedelta(seconds=20), run(0)))
    assert again.events == []


def test_catch_up_after_downtime_runs_slots_within_the_deadline_and_reports_older_ones() -> None:
    spec = schedule(concurrencyPolicy="Allow", startingDeadlineSeconds=2 * 3600)
    result = plan(spec, ScheduleStatus(last_schedule_time=at(1)), observe(at(5) + dt.timedelta(minutes=1)))
    assert slots_of(result) == ["2026-12-01T04:00:00Z", "2026-12-01T05:00:00Z"]
    missed = [e for e in result.events if e.reason == Reason.SLOTS_MISSED]
    assert len(missed) == 1 and "2026-12-01T02:00:00Z to 2026-12-01T03:00:00Z" in missed[0].message


def test_suspended_starts_nothing_decides_nothing_and_shows_no_next_run() -> None:
    result = plan(schedule(suspend=True), ScheduleStatus(last_schedule_time=at(1)), observe(at(3)))
    assert result.creates == [] and result.status.last_schedule_time == at(1)
    assert result.status.next_schedule_time is None


def test_an_ended_run_is_reported_once_and_only_reported_runs_go_with_the_history() -> None:
    spec = schedule(successfulRunsHistoryLimit=1, failedRunsHistoryLimit=0)
    runs = [run(1, "Succeeded", reported=True), run(2, "Succeeded", reported=True), run(3, "Failed")]
    result = plan(spec, ScheduleStatus(last_schedule_time=at(3)), observe(at(3.5), *runs))
    assert [r.name for r in result.ended] == [run_name("daily", at(3))]
    assert [r.name for r in result.deletes] == [run_name("daily", at(1))], "the failed one is not reported yet"
    assert result.status.last_successful_time == at(2)


def test_a_template_that_makes_an_invalid_run_says_why_once_and_leaves_the_slot_undecided() -> None:
    spec = schedule(workflowTemplate={"spec": spec_dict(**{"input.prefix": '{{ scheduledTime | date "/%Y" }}/'})})
    first = plan(spec, ScheduleStatus(), observe(at(1)))
    assert first.creates == [] and first.status.last_schedule_time is None
    assert [e.reason for e in first.events] == [Reason.INVALID_RUN]
    assert "input.prefix" in first.status.message
    again = plan(spec, first.status, observe(at(1) + dt.timedelta(seconds=30)))
    assert again.events == [], "the same problem is not said again"


@given(
    st.sampled_from(["Allow", "Forbid", "Replace"]),
    st.lists(st.integers(min_value=1, max_value=30), max_size=8, unique=True),
    st.integers(min_value=1, max_value=30),
)
def test_no_slot_is_ever_started_twice_and_decided_time_never_moves_back(
    policy: str, existing: list[int], now_hour: int
) -> None:
    spec = schedule(concurrencyPolicy=policy)
    runs = [run(h, "Succeeded", reported=True) for h in existing if h <= now_hour]
    status = ScheduleStatus(last_schedule_time=at(min(existing)) if existing else None)
    result = plan(spec, status, observe(at(now_hour), *runs))
    names = [b["metadata"]["name"] for b in result.creates]
    assert len(names) == len(set(names))
    assert not set(names) & {r.name for r in runs}
    if status.last_schedule_time is not None:
        assert result.status.last_schedule_time is not None
        assert result.status.last_schedule_time >= status.last_schedule_time
