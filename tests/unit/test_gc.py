"""What `paraflow gc` may name: runs of workflows that no longer exist, recognised by paraflow's
own layout, and nothing else."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow.cli.gc import Orphan, orphans

pytestmark = pytest.mark.unit

LIVE, DEAD, FOREIGN = (str(uuid.UUID(int=n)) for n in (1, 2, 3))


def test_only_runs_of_deleted_workflows_in_paraflows_layout_are_named() -> None:
    keys = [
        f"out/_paraflow/{LIVE}/plan.json",
        f"out/_paraflow/{DEAD}/partitions/0.json",
        f"out/_paraflow/{DEAD}/results/p0/a1/s0.json",
        f"out/_paraflow/{FOREIGN}/notes.txt",  # uid-shaped, but nothing paraflow writes
        "out/_paraflow/not-a-uid/plan.json",
        "out/_paraflow/readme.md",
    ]
    assert orphans("out/", keys, {LIVE}) == [Orphan(DEAD, f"out/_paraflow/{DEAD}/", f"out/{DEAD}/")]


@given(
    uids=st.lists(st.uuids().map(str), unique=True, max_size=6),
    live_mask=st.lists(st.booleans(), min_size=6, max_size=6),
    rest=st.sampled_from(
        ["plan.json", "manifest.json", "identity.json", "partitions/12.json", "results/reduce/a2.json"]
    ),
)
def test_a_live_workflows_run_is_never_named_and_every_dead_one_is(
    uids: list[str], live_mask: list[bool], rest: str
) -> None:
    live = {u for u, alive in zip(uids, live_mask, strict=False) if alive}
    found = orphans("p/", [f"p/_paraflow/{u}/{rest}" for u in uids], live)
    assert {o.uid for o in found} == set(uids) - live
