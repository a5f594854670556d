"""The Job index our own watch keeps: after any sequence of watch events and relists it holds
exactly the facts of the last version of every child Job that still exists, by workflow; and it
wakes a workflow exactly when what its planner would see changed. The watch stream's lines are
whole events however its chunks fall, and the events of one read before an error still count."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client

from paraflow import constants as c
from paraflow.k8s.builders import job_facts
from paraflow.k8s.jobindex import JobIndex
from paraflow.k8s.jobwatch import JobWatch, _batches, _Position

pytestmark = pytest.mark.unit

NAMESPACES = ("a", "b")
WORKFLOWS = ("uid-1", "uid-2")


def job(namespace: str, name: str, owner: str | None, phase: str, ready: int) -> dict[str, Any]:
    labels = {c.LABEL_ROLE: c.ROLE_PARTITION, c.LABEL_PARTITION: name[-1], c.LABEL_ATTEMPT: "1"}
    if owner is not None:
        labels[c.LABEL_WORKFLOW_UID] = owner
    conditions = [] if phase == "Active" else [{"type": phase, "status": "True"}]
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"{namespace}/{name}", "labels": labels},
        "status": {"ready": ready, "conditions": conditions},
    }


# Any version of a Job may name either workflow or none (relabelled by hand, another tool's Job),
# and one name may exist in both namespaces (a copied Job keeps its labels).
JOBS = st.builds(
    job,
    st.sampled_from(NAMESPACES),
    st.integers(0, 3).map(lambda i: f"j{i}"),
    st.sampled_from([*WORKFLOWS, None]),
    st.sampled_from(["Active", "Complete", "Failed"]),
    st.integers(0, 1),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["ADDED", "MODIFIED", "DELETED"]), JOBS),
        st.tuples(st.just("RELIST"), st.sampled_from([*NAMESPACES, None]), st.lists(JOBS, max_size=6)),
    ),
    max_size=30,
)


def key(j: dict[str, Any]) -> tuple[str, str]:
    return j["metadata"]["namespace"], j["metadata"]["name"]


def view(index: JobIndex) -> dict[str, set[Any]]:
    return {w: set(index.jobs_of(w)) for w in WORKFLOWS}


@given(STEPS)
def test_the_index_holds_the_last_facts_of_every_existing_job_and_wakes_only_on_change(steps: list[Any]) -> None:
    index = JobIndex()
    alive: dict[tuple[str, str], dict[str, Any]] = {}  # the model: the cluster's Jobs as last seen
    for step in steps:
        before = view(index)
        if step[0] == "RELIST":
            _, scope, listed = step
            unique = {key(j): j for j in listed}
            woken = index.replace(scope, unique.values())
            alive = {k: j for k, j in alive.items() if scope is not None and k[0] != scope}
            alive.update(unique)
        else:
            kind, j = step
            woken = index.apply(kind, j)
            if kind == "DELETED":
                alive.pop(key(j), None)
            else:
                alive[key(j)] = j
        after = view(index)
        expected: dict[str, set[Any]] = {w: set() for w in WORKFLOWS}
        for j in alive.values():
            owner = j["metadata"]["labels"].get(c.LABEL_WORKFLOW_UID)
            if owner is not None:
                expected[owner].add(job_facts(j))
        assert after == expected
        assert woken == {w for w in WORKFLOWS if before[w] != after[w]}


def test_a_status_update_that_changes_nothing_a_plan_reads_wakes_nobody() -> None:
    index = JobIndex()
    assert index.apply("ADDED", job("a", "j0", "uid-1", "Active", 0)) == {"uid-1"}
    assert index.apply("MODIFIED", job("a", "j0", "uid-1", "Active", 0)) == set()
    assert index.apply("MODIFIED", job("a", "j0", "uid-1", "Active", 1)) == {"uid-1"}, "its pod runs: no stall"
    assert index.apply("MODIFIED", job("a", "j0", "uid-1", "Complete", 1)) == {"uid-1"}


def test_a_job_relabelled_to_another_workflow_wakes_both() -> None:
    index = JobIndex()
    index.apply("ADDED", job("a", "j0", "uid-1", "Active", 0))
    assert index.apply("MODIFIED", job("a", "j0", "uid-2", "Active", 0)) == {"uid-1", "uid-2"}
    assert index.jobs_of("uid-1") == [] and [j.name for j in index.jobs_of("uid-2")] == ["j0"]


def test_a_job_without_the_workflow_label_is_not_indexed() -> None:
    index = JobIndex()
    assert index.apply("ADDED", job("a", "j0", None, "Active", 0)) == set()
    assert len(index) == 0


class Chunked:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self, amt: None, decode_content: bool) -> Iterator[bytes]:
        return iter(self.chunks)


@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1), max_size=8), st.data())
def test_watch_lines_are_whole_events_however_the_stream_is_chunked(events: list[str], data: st.DataObject) -> None:
    wire = b"".join(e.encode() + b"\n" for e in events)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    batches = list(_batches(Chunked(chunks)))
    assert [line.decode() for batch in batches for line in batch] == events
    assert all(batches), "no empty batch is handed to the loop"


class Stream(Chunked):
    def release_conn(self) -> None:
        pass


def event(kind: str, obj: dict[str, Any], version: str) -> bytes:
    obj = {**obj, "metadata": {**obj.get("metadata", {}), "resourceVersion": version}}
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def follow(*lines: bytes) -> tuple[JobIndex, set[str], _Position, Exception | None]:
    """One read bringing ``lines`` into a watch: what it indexed, woke and where it stands."""
    index, woken, position = JobIndex(), set[str](), _Position("1")

    async def scenario() -> Exception | None:
        watch = JobWatch(client.ApiClient(), ["a"], index, wake=woken.add, server_timeout=5, client_timeout=5)
        watch._loop = asyncio.get_running_loop()
        watch._request = lambda scope, **_: Stream([b"".join(lines)])  # type: ignore[method-assign]
        try:
            watch._follow("a", position)
            failed = None
        except ValueError as e:
            failed = e
        await asyncio.sleep(0)  # the loop applies what the thread handed it
        return failed

    return index, woken, position, asyncio.run(scenario())


def test_a_read_ending_in_gone_applies_its_events_and_asks_for_a_relist() -> None:
    index, woken, position, failed = follow(
        event("ADDED", job("a", "j0", "uid-1", "Active", 0), "10"),
        event("MODIFIED", job("a", "j1", "uid-2", "Complete", 0), "11"),
        event("ERROR", {"code": 410, "message": "too old"}, "12"),
    )
    assert failed is None and position.version is None, "gone: list again"
    assert [j.name for j in index.jobs_of("uid-1")] == ["j0"] and [j.name for j in index.jobs_of("uid-2")] == ["j1"]
    assert woken == {"uid-1", "uid-2"}


def test_a_read_ending_in_an_error_applies_its_events_and_resumes_after_the_last() -> None:
    index, woken, position, failed = follow(
        event("ADDED", job("a", "j0", "uid-1", "Active", 0), "10"),
        event("ERROR", {"code": 500, "message": "internal"}, "11"),
    )
    assert isinstance(failed, ValueError) and "500" in str(failed)
    assert position.version == "10", "the stream resumes after the last event applied"
    assert [j.name for j in index.jobs_of("uid-1")] == ["j0"] and woken == {"uid-1"}
