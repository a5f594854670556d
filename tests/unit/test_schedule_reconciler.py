"""The schedule reconciler's order of work, with a fake of our Kubernetes adapter: runs are created
before the status that records their slot, an ended run is reported once and marked, and only
then may the history limits delete it."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from paraflow import constants as c
from paraflow.planning.actions import Event
from paraflow.planning.schedule import run_name
from paraflow.reasons import Reason
from paraflow.schedule_reconciler import ScheduleReconciler
from tests.unit.builders import spec_dict

pytestmark = pytest.mark.unit

CREATED = dt.datetime(2026, 12, 1, 0, 0, 30, tzinfo=dt.UTC)
SLOT = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)


class FakeApi:
    def __init__(self, runs: list[dict[str, Any]] | None = None) -> None:
        self.runs = {r["metadata"]["name"]: r for r in runs or []}
        self.calls: list[str] = []
        self.schedule: dict[str, Any] = {}
        self.refuse = False

    async def read_workflow(self, namespace: str, name: str, *, plural: str) -> dict[str, Any]:
        return self.schedule

    async def list_workflows(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return list(self.runs.values())

    async def create_workflow(self, body: dict[str, Any]) -> bool:
        self.calls.append(f"create {body['metadata']['name']}")
        if self.refuse:
            raise ApiException(status=403, reason="Forbidden: exceeded quota")
        made = body["metadata"]["name"] not in self.runs
        self.runs.setdefault(body["metadata"]["name"], {**body, "metadata": {**body["metadata"], "uid": "u"}})
        return made

    async def delete_workflow(self, namespace: str, name: str, uid: str) -> None:
        self.calls.append(f"delete {name}")

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any], *, plural: str) -> None:
        self.calls.append(f"status {sorted(status)}")

    async def annotate_workflow(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.calls.append(f"annotate {name} {annotations}")
        self.runs[name]["metadata"].setdefault("annotations", {}).update(annotations)


def schedule(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "s", "namespace": "ns", "uid": "su", "creationTimestamp": "2026-12-01T00:00:30Z"},
        "spec": {"schedule": "0 * * * *", "workflowTemplate": {"spec": spec_dict()}, **spec},
    }


def ended_run(slot: dt.datetime, phase: str) -> dict[str, Any]:
    stamp = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {
            "name": run_name("s", slot),
            "namespace": "ns",
            "uid": f"u-{slot:%H}",
            "annotations": {c.ANNOTATION_SLOT: stamp},
        },
        "status": {"phase": phase, "startTime": stamp, "completionTime": stamp},
    }


def reconcile(api: FakeApi, body: dict[str, Any], now: dt.datetime) -> list[Event]:
    events: list[Event] = []
    reconciler = ScheduleReconciler(api, lambda _, e: events.append(e), clock=lambda: now)  # type: ignore[arg-type]
    api.schedule = body

    async def pass_and_reports() -> None:
        await reconciler.reconcile(body)
        await reconciler.settle()

    asyncio.run(pass_and_reports())
    return events


def test_the_run_is_created_before_the_status_that_records_its_slot() -> None:
    api = FakeApi()
    events = reconcile(api, schedule(), SLOT + dt.timedelta(seconds=3))
    assert api.calls[0] == f"create {run_name('s', SLOT)}"
    assert api.calls[1].startswith("status") and "lastScheduleTime" in api.calls[1]
    assert [e.reason for e in events] == [Reason.RUN_STARTED]


def test_an_ended_run_is_told_once_marked_and_only_then_deleted_by_the_history() -> None:
    api = FakeApi([ended_run(SLOT, "Succeeded")])
    body = schedule(successfulRunsHistoryLimit=0)
    now = SLOT + dt.timedelta(minutes=10)
    first = reconcile(api, {**body, "status": {"lastScheduleTime": "2026-12-01T01:00:00Z"}}, now)
    assert [e.reason for e in first] == [Reason.RUN_SUCCEEDED]
    assert f"annotate {run_name('s', SLOT)} {{'{c.ANNOTATION_REPORTED}': 'NoHook'}}" in api.calls
    assert not any(call.startswith("delete") for call in api.calls), "not before it is reported"
    api.calls.clear()
    second = reconcile(api, {**body, "status": {"lastScheduleTime": "2026-12-01T01:00:00Z"}}, now)
    assert second == [] and f"delete {run_name('s', SLOT)}" in api.calls


def test_a_spec_the_operator_refuses_is_said_once_in_the_status_and_an_event() -> None:
    bad = schedule(schedule="0 0 30 2 *")
    api = FakeApi()
    events = reconcile(api, bad, SLOT)
    assert [e.reason for e in events] == [Reason.INVALID_SCHEDULE] and "Bad day-of-month" in events[0].message
    assert api.calls == ["status ['message']"]
    again = reconcile(api, {**bad, "status": {"message": events[0].message}}, SLOT)
    assert again == []


def test_a_run_the_apiserver_refuses_is_said_once_and_its_slot_tried_again_soon() -> None:
    """A namespace quota: the schedule says why, keeps the slot undecided, and recovers by itself."""
    api = FakeApi()
    api.refuse = True
    events = reconcile(api, schedule(), SLOT + dt.timedelta(seconds=3))
    assert [e.reason for e in events] == [Reason.RUN_NOT_CREATED]
    status_write = next(call for call in api.calls if call.startswith("status"))
    assert "message" in status_write and "lastScheduleTime" not in status_write
    api.refuse = False
    body = {**schedule(), "status": {"message": events[0].message}}
    again = reconcile(api, body, SLOT + dt.timedelta(seconds=40))
    assert [e.reason for e in again] == [Reason.RUN_STARTED]
