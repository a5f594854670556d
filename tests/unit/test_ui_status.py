"""The Map Run view's status math: the grid drawn from a status alone names every partition's
state as the status counts it, and the ETA follows the recent rate."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow.planning import indexsets
from paraflow.ui.grid import CODE, STATES, grid
from paraflow.ui.progress import History, Sample, estimate
from paraflow.ui.view import workflow_view

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


@st.composite
def statuses(draw: st.DrawFn) -> tuple[dict[str, object], dict[int, str]]:
    """A status as the planner writes it: disjoint index sets whose sizes are the counts."""
    total = draw(st.integers(0, 3000))
    state = draw(
        st.lists(
            st.sampled_from(["pending", "queued", "running", "succeeded", "failed"]), min_size=total, max_size=total
        )
    )
    attempts = draw(st.lists(st.integers(1, 4), min_size=total, max_size=total))
    phase = draw(st.sampled_from(["Running", "Failed", "Succeeded"]))
    named = {s: [i for i in range(total) if state[i] == s] for s in ("queued", "running", "succeeded", "failed")}
    by_attempt: dict[str, list[int]] = {}
    for i, a in enumerate(attempts):
        if a > 1 and state[i] != "pending":
            by_attempt.setdefault(str(a), []).append(i)
    status = {
        "phase": phase,
        "partitions": {
            "total": total,
            **{s: len(named[s]) for s in named},
            "pending": state.count("pending"),
        },
        **{f"{s}Indexes": indexsets.compress(named[s]) for s in named},
        "attempts": {a: indexsets.compress(found) for a, found in by_attempt.items()},
    }
    truth = {}
    for i in range(total):
        s = state[i]
        if s == "running" and attempts[i] > 1:
            s = "retrying"
        if s == "pending" and phase in ("Succeeded", "Failed"):
            s = "notRun"
        truth[i] = s
    return status, truth


@given(statuses())
def test_every_cell_has_the_state_its_status_gives_it_and_the_counts_add_up(drawn: tuple[dict, dict[int, str]]) -> None:
    status, truth = drawn
    cells = grid(status)
    assert len(cells.cells) == status["partitions"]["total"]
    assert all(cells.cells[i] == CODE[s] for i, s in truth.items())
    counts = cells.counts()
    parts = status["partitions"]
    assert counts["succeeded"] == parts["succeeded"] and counts["failed"] == parts["failed"]
    assert counts["queued"] == parts["queued"]
    assert counts["running"] + counts["retrying"] == parts["running"]
    assert counts["pending"] + counts["notRun"] == parts["pending"]
    assert sum(counts.values()) == parts["total"]


def test_a_status_without_partitions_draws_no_cell() -> None:
    assert grid({}).cells == "" and set(grid({}).counts().values()) == {0}
    assert set(grid({}).counts()) == set(STATES)


def test_the_eta_is_what_is_left_at_the_rate_of_the_last_minutes() -> None:
    samples = [
        Sample(T0, 0, 0),
        Sample(T0 + dt.timedelta(minutes=2), 20, 0),
        Sample(T0 + dt.timedelta(minutes=4), 40, 0),
    ]
    ahead = estimate(samples, total=100, now=T0 + dt.timedelta(minutes=4))
    assert ahead.per_minute == pytest.approx(10)
    assert ahead.seconds_left == pytest.approx(6 * 60)


def test_a_run_that_stopped_moving_slows_its_estimate_and_an_old_burst_is_forgotten() -> None:
    # 90 done in the first minute, then nothing for ten: the recent rate is what counts.
    samples = [Sample(T0, 0, 0), Sample(T0 + dt.timedelta(minutes=1), 90, 0)]
    later = estimate(samples, total=100, now=T0 + dt.timedelta(minutes=11))
    assert later.per_minute is not None and later.per_minute < 9
    assert later.seconds_left is not None and later.seconds_left > 60


def test_no_estimate_before_progress_or_when_nothing_is_left() -> None:
    assert estimate([Sample(T0, 0, 0)], total=10, now=T0).seconds_left is None
    done = [Sample(T0, 0, 0), Sample(T0 + dt.timedelta(minutes=1), 10, 0)]
    assert estimate(done, total=10, now=T0 + dt.timedelta(minutes=1)).seconds_left is None


def test_history_keeps_one_sample_per_change() -> None:
    history = History()
    for minute, done in enumerate([0, 0, 3, 3, 3, 5]):
        history.add(Sample(T0 + dt.timedelta(minutes=minute), done, 0))
    assert [s.done for s in history.samples] == [0, 3, 5]


def test_the_view_starts_the_progress_at_the_run_start_and_lists_failed_partitions_with_why() -> None:
    wf = {
        "metadata": {"name": "nightly", "namespace": "team", "uid": "u1"},
        "spec": {"maxConcurrency": 4},
        "status": {
            "phase": "Running",
            "startTime": "2026-12-07T11:50:00Z",
            "partitions": {"total": 5, "succeeded": 2, "failed": 1, "running": 1, "pending": 1},
            "succeededIndexes": "0-1",
            "failedIndexes": "3",
            "runningIndexes": "2",
            "attempts": {"2": "3"},
        },
    }
    view = workflow_view(wf, samples=[Sample(T0, 3, 0)], failures={3: "exit 3 (Error)"}, now=T0)
    assert view["cells"] == "44250"
    assert view["history"][0] == {"at": "2026-12-07T11:50:00+00:00", "done": 0, "replicated": 0}
    assert view["failed"] == [{"partition": 3, "attempt": 2, "why": "exit 3 (Error)"}]
    assert view["eta"]["secondsLeft"] == pytest.approx(2 / (3 / 10) * 60)


def test_a_redrive_starts_the_estimate_over_instead_of_reading_its_drop_as_a_slowdown() -> None:
    # 10 done with 2 failed; a redrive takes the 2 out of "done"; then 1 more done in a minute.
    samples = [
        Sample(T0, 0, 0, 0),
        Sample(T0 + dt.timedelta(minutes=1), 10, 0, 0),
        Sample(T0 + dt.timedelta(minutes=2), 8, 0, 1),
        Sample(T0 + dt.timedelta(minutes=3), 9, 0, 1),
    ]
    ahead = estimate(samples, total=10, now=T0 + dt.timedelta(minutes=3))
    assert ahead.per_minute == pytest.approx(1) and ahead.seconds_left == pytest.approx(60)


def test_a_status_from_an_older_operator_says_its_running_partitions_are_not_drawn() -> None:
    wf = {
        "metadata": {"name": "old", "namespace": "team", "uid": "u2"},
        "status": {"phase": "Running", "partitions": {"total": 3, "running": 2, "pending": 1}},
    }
    view = workflow_view(wf, samples=[], failures={}, now=T0)
    assert view["cells"] == "000" and "names no running partitions" in view["note"]
