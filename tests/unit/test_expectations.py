"""Created-but-not-yet-watched Jobs count as active until the watch shows them."""

from __future__ import annotations

import pytest

from paraflow import constants as c
from paraflow.planning import planner
from paraflow.planning.expectations import Expectations
from paraflow.planning.planner import CreatePartition, JobFacts, JobState
from tests.unit.builders import make_spec
from tests.unit.test_planner import observe, partitioned

pytestmark = pytest.mark.unit


def job(p: int) -> JobFacts:
    return JobFacts(f"wf-p{p}-a1", c.ROLE_PARTITION, p, 1, JobState.ACTIVE)


def test_a_pass_before_the_watch_catches_up_neither_recreates_nor_exceeds_the_limit() -> None:
    spec, status = make_spec(maxConcurrency=2), partitioned(5)
    first = planner.plan(spec, status, observe())
    assert first.creates == [CreatePartition(0, 1), CreatePartition(1, 1)]
    expected = Expectations()
    for action in first.creates:
        assert isinstance(action, CreatePartition)
        expected.expect("uid", job(action.index), now=0.0)
    lagging = planner.plan(spec, first.status, observe(*expected.merge("uid", [], now=1.0)))
    assert lagging.creates == []  # without expectations: 0 and 1 again, or 2 and 3 beyond the limit


def test_a_job_seen_by_the_watch_or_too_old_is_no_longer_expected() -> None:
    expected = Expectations(ttl_seconds=10)
    expected.expect("uid", job(0), now=0.0)
    expected.expect("uid", job(1), now=0.0)
    seen = JobFacts("wf-p0-a1", c.ROLE_PARTITION, 0, 1, JobState.SUCCEEDED)
    assert expected.merge("uid", [seen], now=1.0) == [seen, job(1)]
    assert expected.merge("uid", [seen], now=2.0) == [seen, job(1)]
    assert expected.merge("uid", [seen], now=12.0) == [seen]
    expected.expect("other", job(3), now=0.0)
    expected.forget("other")
    assert expected.merge("other", [], now=1.0) == []
