"""The operator's gauges, kept by difference per pass, always equal the sums over every
workflow's last status."""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paraflow import metrics
from paraflow.models import PartitionCounts, Phase, ReplicationStatus, WorkflowStatus

pytestmark = pytest.mark.unit

statuses = st.builds(
    WorkflowStatus,
    phase=st.sampled_from(get_args(Phase)),
    partitions=st.builds(PartitionCounts, **{s: st.integers(0, 50) for s in metrics.STATES}),
    replication=st.none()
    | st.builds(ReplicationStatus, objects=st.integers(0, 99), bytes=st.integers(0, 9999), pending=st.integers(0, 20)),
)


def gauge(g: object, *labels: str) -> float:
    target = g.labels(*labels) if labels else g  # type: ignore[attr-defined]
    return float(target._value.get())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.none() | statuses), max_size=20))
def test_the_gauges_equal_the_sums_over_each_workflows_last_status(updates: list) -> None:
    metrics._totals = metrics._Totals()
    metrics._publish()
    last: dict[str, WorkflowStatus] = {}
    for uid, status in updates:
        metrics.observe(uid, status)
        if status is None:
            last.pop(uid, None)
        else:
            last[uid] = status
    for phase in get_args(Phase):
        assert gauge(metrics.WORKFLOWS, phase) == sum(s.phase == phase for s in last.values())
    for state in metrics.STATES:
        assert gauge(metrics.PARTITIONS, state) == sum(getattr(s.partitions, state) for s in last.values())
    assert gauge(metrics.REPLICATED_OBJECTS) == sum(s.replication.objects for s in last.values() if s.replication)
    assert gauge(metrics.REPLICATED_BYTES) == sum(s.replication.bytes for s in last.values() if s.replication)
    assert gauge(metrics.REPLICATION_PENDING) == sum(s.replication.pending for s in last.values() if s.replication)
