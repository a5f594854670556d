"""A finished workflow costs nothing and needs nothing: no Secret, no MinIO, no status write, no
pass until an event or its TTL; the TTL is the planner's to compute. And one pass creates a
bounded number of Jobs, so one huge workflow cannot starve the others."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from paraflow.k8s.api import SecretMissing
from paraflow.loops import WorkflowLoops
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.planner import CreatePartition, JobState
from paraflow.reconciler import Reconciler
from paraflow.settings import Settings
from tests.unit.builders import T0, make_spec, spec_dict
from tests.unit.test_planner import observe, part, partitioned
from tests.unit.test_planner_replication import repl
from tests.unit.test_planner_replication import spec as replicated_spec

pytestmark = pytest.mark.unit


class FakeApi:
    """Our KubeApi's surface, recording every call; the Secret is gone."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read_secret(self, namespace: str, name: str, keys: tuple[str, ...]) -> dict[str, str]:
        self.calls.append("read_secret")
        raise SecretMissing(f'Secret "{name}" not found')

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.calls.append("patch_status")

    async def delete_workflow(self, namespace: str, name: str, uid: str) -> None:
        self.calls.append("delete_workflow")


def finished_body(ttl: int | None) -> dict[str, Any]:
    status = partitioned(1)
    status.phase, status.completion_time = "Succeeded", T0
    # As a finished run's last pass writes it: partition 0 succeeded, none running.
    status.succeeded_indexes, status.running_indexes = "0", ""
    status.partitions.succeeded, status.partitions.running = 1, 0
    status.manifest = "s3://processed/daily/_paraflow/uid-1/manifest.json"
    return {
        "metadata": {"name": "wf", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": spec_dict(ttlSecondsAfterFinished=ttl) if ttl is not None else spec_dict(),
        "status": status.model_dump(mode="json", exclude_none=True),
    }


def run_pass(body: dict[str, Any], now: dt.datetime) -> tuple[float | None, FakeApi, list[Any]]:
    api, events = FakeApi(), []
    reconciler = Reconciler(api, Settings(), emit=lambda _, e: events.append(e), clock=lambda: now)  # type: ignore[arg-type]
    done = [part(0, 1, JobState.SUCCEEDED)]
    delay = asyncio.run(reconciler.reconcile(body, done))
    return delay, api, events


def test_a_finished_workflow_whose_secret_is_gone_is_left_alone_and_sleeps_until_an_event() -> None:
    delay, api, events = run_pass(finished_body(ttl=None), T0 + dt.timedelta(days=3))
    assert (delay, api.calls, events) == (None, [], [])


def test_its_ttl_still_fires_without_the_secret_and_the_loop_wakes_for_it() -> None:
    early, api, _ = run_pass(finished_body(ttl=600), T0 + dt.timedelta(seconds=100))
    assert (early, api.calls) == (500.0, [])
    late, api, _ = run_pass(finished_body(ttl=600), T0 + dt.timedelta(seconds=601))
    assert (late, api.calls) == (None, ["delete_workflow"])


def test_a_redrive_of_a_finished_workflow_is_not_idle() -> None:
    body = finished_body(ttl=None)
    body["metadata"]["annotations"] = {"paraflow.dev/redrive": "now"}
    _, api, events = run_pass(body, T0)
    assert api.calls[0] == "read_secret"  # the redrive needs the storage: Blocked without it
    assert [e.reason for e in events] == ["SecretNotFound"]


def test_settled_means_finished_with_nothing_running_or_left_to_write() -> None:
    spec = make_spec()
    done = WorkflowStatus.model_validate(finished_body(None)["status"])
    assert planner.settled(spec, done, [part(0, 1, JobState.SUCCEEDED)], redrive_token="", logs_kept=set())
    assert not planner.settled(spec, done, [part(0, 1, JobState.ACTIVE)], redrive_token="", logs_kept=set())
    assert not planner.settled(spec, done, [], redrive_token="a-new-redrive", logs_kept=set())
    unwritten = done.model_copy(update={"manifest": ""})
    assert not planner.settled(
        spec, unwritten, [], redrive_token="", logs_kept=set()
    )  # its manifest is still to be written
    assert not planner.settled(spec, partitioned(1), [], redrive_token="", logs_kept=set())  # running


def test_expires_in_counts_from_completion() -> None:
    status = WorkflowStatus.model_validate(finished_body(None)["status"])
    assert planner.expires_in(make_spec(ttlSecondsAfterFinished=60), status, T0 + dt.timedelta(seconds=45)) == 15
    assert planner.expires_in(make_spec(), status, T0) is None
    assert planner.expires_in(make_spec(ttlSecondsAfterFinished=60), partitioned(1), T0) is None


def test_one_pass_creates_at_most_max_creates_and_comes_back_soon_for_the_rest() -> None:
    spec = make_spec(maxConcurrency=1000)
    obs = observe()
    capped = planner.plan(spec, partitioned(1000), planner.Observed(obs.jobs, 1, T0, "uid-1", max_creates=300))
    assert len(capped.creates) == 300
    assert capped.requeue_after == planner.CAPPED_REQUEUE_SECONDS
    running = [part(i, 1, JobState.ACTIVE) for i in range(300)]
    nxt = planner.plan(spec, capped.status, planner.Observed(running, 1, T0, "uid-1", max_creates=300))
    assert nxt.creates[0] == CreatePartition(300, 1) and len(nxt.creates) == 300


def test_an_idle_workflows_loop_runs_no_pass_until_an_event_wakes_it() -> None:
    async def scenario() -> tuple[int, int]:
        passes: list[int] = []

        async def idle_pass(body: Any, jobs: Any) -> float | None:
            passes.append(1)
            return None

        loops = WorkflowLoops(idle_pass, lambda uid: [], debounce=0, backoff=1, backoff_max=1)
        loops.activate()
        loops.observe("uid-1", {"metadata": {}})
        await asyncio.sleep(0.3)
        before_wake = len(passes)
        loops.wake("uid-1")
        await asyncio.sleep(0.3)
        await loops.stop()
        return before_wake, len(passes)

    assert asyncio.run(scenario()) == (1, 2)


def test_replication_jobs_have_their_own_concurrency_limit() -> None:
    jobs = [part(i, 1, JobState.SUCCEEDED) for i in range(4)] + [repl(0, 1, JobState.ACTIVE)]
    own = replicated_spec(maxConcurrency=4)
    own.replication.max_concurrency = 2  # type: ignore[union-attr]
    result = planner.plan(own, partitioned(4), observe(*jobs))
    assert [x.index for x in result.creates if isinstance(x, planner.CreateReplication)] == [1]
    shared = planner.plan(replicated_spec(maxConcurrency=4), partitioned(4), observe(*jobs))
    assert [x.index for x in shared.creates if isinstance(x, planner.CreateReplication)] == [1, 2, 3]
