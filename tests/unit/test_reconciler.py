"""One reconcile pass against a fake of our own KubeApi (its storage calls answered by name): a
bad spec is rejected, a missing Secret blocks, a create answered 409 is expected and not retried,
status is written once per pass as a merge patch, and Events follow; succeeded Jobs are deleted
only after the status recording them is written. No cluster, no MinIO."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client import ApiException

from paraflow import metrics
from paraflow.k8s.api import SecretMissing
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.planner import Event, JobState
from paraflow.reconciler import Reconciler
from paraflow.settings import Settings
from tests.unit.builders import T0, make_spec, spec_dict
from tests.unit.test_planner import observe, part, partitioned, partitioner

pytestmark = pytest.mark.unit


class FakeApi:
    """KubeApi's surface: records writes; Jobs named in ``existing`` answer 409."""

    def __init__(
        self,
        secret: bool = True,
        existing: frozenset[str] = frozenset(),
        refuse_patch: bool = False,
        refuse_delete: bool = False,
        server: dict[str, Any] | None = None,
    ) -> None:
        self.secret, self.existing, self.refuse_patch, self.refuse_delete = (
            secret,
            existing,
            refuse_patch,
            refuse_delete,
        )
        self.server = server  # the workflow as the apiserver holds it (None: as the pass was given it)
        self.created: list[str] = []
        self.patches: list[dict[str, Any]] = []
        self.storage: list[str] = []
        self.writes: list[str] = []  # every write in order: "create <job>", "patch", "delete <job>"
        self.deleted_uids: dict[str, str] = {}  # Job name -> the uid its delete was conditioned on
        self.asked: list[str] = []  # Jobs whose Events were listed: why do their pods not run?
        self.workloads: list[dict[str, Any]] | ApiException = []  # what Kueue holds of every Job
        self.workloads_read: list[str] = []  # the Job uids whose Workloads were read

    async def read_secret(self, namespace: str, name: str, keys: tuple[str, ...]) -> dict[str, str]:
        if not self.secret:
            raise SecretMissing(f'Secret "{name}" not found in namespace "{namespace}"')
        return {"accessKey": "a", "secretKey": "s"}

    async def offload(self, fn: Callable[..., Any], *args: Any, writes: bool = False, **kwargs: Any) -> Any:
        self.storage.append(fn.__name__)
        return None  # preflight passes; the pass below never needs the plan

    async def create_job(self, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        if name in self.existing:
            return False
        self.created.append(name)
        self.writes.append(f"create {name}")
        return True

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        if self.refuse_patch:
            raise ApiException(status=500, reason="etcdserver: request timed out")
        self.patches.append(status)
        self.writes.append("patch")

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        if self.refuse_delete:
            raise ApiException(status=403, reason="Forbidden")
        self.writes.append(f"delete {name}")
        self.deleted_uids[name] = uid
        return True

    async def read_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.server

    async def job_events(self, namespace: str, job: str) -> list[dict[str, Any]]:
        self.asked.append(job)
        return []

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return []

    async def job_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        self.workloads_read.append(job_uid)
        if isinstance(self.workloads, ApiException):
            raise self.workloads
        return self.workloads


def body(status: WorkflowStatus | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "wf", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": spec_dict(**spec),
        "status": status.model_dump(mode="json", exclude_none=True) if status else {},
    }


def run(api: FakeApi, wf: dict[str, Any], jobs: list[Any], settings: Settings | None = None) -> list[Event]:
    events: list[Event] = []
    api.server = api.server or wf
    reconciler = Reconciler(api, settings or Settings(), emit=lambda _, e: events.append(e), clock=lambda: T0)  # type: ignore[arg-type]
    asyncio.run(reconciler.reconcile(wf, jobs))
    return events


def test_a_spec_the_schema_let_through_but_the_models_refuse_fails_with_invalid_spec() -> None:
    api = FakeApi()
    events = run(api, body(**{"partitioner.builtin.maxBytesPerPartition": "lots"}), [])
    assert api.created == [] and api.storage == [], "nothing runs, MinIO is not even asked"
    assert len(api.patches) == 1 and api.patches[0]["phase"] == "Failed"
    assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidSpec")]
    assert "maxBytesPerPartition" in events[0].message


def test_a_new_workflow_without_its_secret_is_blocked_and_says_which() -> None:
    api = FakeApi(secret=False)
    events = run(api, body(), [])
    assert api.created == []
    assert api.patches[0]["phase"] == "Blocked"
    assert [(e.type, e.reason) for e in events] == [("Warning", "SecretNotFound")]
    assert 'Secret "minio-creds" not found' in events[0].message


def test_a_create_answered_409_counts_as_made_and_the_status_is_written_once() -> None:
    api = FakeApi(existing=frozenset({"wf-p1-a1"}))
    conflicts = metrics.JOBS_ALREADY_EXISTED.labels("partition")._value.get()
    status = partitioned(4)
    events = run(api, body(status, maxConcurrency=3), [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.ACTIVE)])
    assert api.created == ["wf-p2-a1"], "p1 existed (an earlier pass, another replica): not made again"
    assert metrics.JOBS_ALREADY_EXISTED.labels("partition")._value.get() == conflicts + 1
    assert len(api.patches) == 1, "one status write per pass"
    assert api.patches[0]["partitions"]["running"] == 3, "the existing Job is counted as running"
    assert events == []


def test_a_pass_with_nothing_new_writes_no_status() -> None:
    status = partitioned(2)
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.ACTIVE), part(1, 1, JobState.ACTIVE)]
    first = FakeApi()
    run(first, body(status, maxConcurrency=2), jobs)
    settled = WorkflowStatus.model_validate(
        {**status.model_dump(mode="json", by_alias=True, exclude_none=True), **first.patches[0]}
    )
    second = FakeApi()
    run(second, body(settled, maxConcurrency=2), jobs)
    assert second.patches == [] and second.created == []


KEEP_NONE = Settings(succeeded_jobs_kept_while_running=0)


def test_a_running_workflow_keeps_its_newest_succeeded_jobs_and_a_finished_one_none() -> None:
    older = part(0, 1, JobState.SUCCEEDED, T0 - dt.timedelta(seconds=5))
    newer = part(1, 1, JobState.SUCCEEDED)
    running = FakeApi()
    run(
        running,
        body(partitioned(3), succeededJobs="Delete"),
        [partitioner(JobState.SUCCEEDED), older, newer, part(2, 1, JobState.ACTIVE)],
        Settings(succeeded_jobs_kept_while_running=1),
    )
    assert [w for w in running.writes if w.startswith("delete")] == ["delete wf-p0-a1"], "the oldest goes, one stays"
    finished = FakeApi()
    run(
        finished,
        body(partitioned(2), succeededJobs="Delete"),
        [partitioner(JobState.SUCCEEDED), older, newer],
        Settings(succeeded_jobs_kept_while_running=1),
    )
    assert sorted(w for w in finished.writes if w.startswith("delete")) == ["delete wf-p0-a1", "delete wf-p1-a1"]


def test_a_succeeded_job_is_deleted_only_after_the_status_recording_it_is_written() -> None:
    api = FakeApi()
    succeeded = dataclasses.replace(part(0, 1, JobState.SUCCEEDED), uid="job-uid-0")
    jobs = [partitioner(JobState.SUCCEEDED), succeeded, part(1, 1, JobState.ACTIVE)]
    run(api, body(partitioned(3), maxConcurrency=2, succeededJobs="Delete"), jobs, KEEP_NONE)
    assert api.writes == ["create wf-p2-a1", "patch", "delete wf-p0-a1"]
    assert api.patches[0]["succeededIndexes"] == "0"
    assert api.deleted_uids == {"wf-p0-a1": "job-uid-0"}, "only the Job that was judged, not its name's next owner"


def test_a_failed_status_write_deletes_nothing() -> None:
    api = FakeApi(refuse_patch=True)
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED)]
    with pytest.raises(ApiException):
        run(api, body(partitioned(2), succeededJobs="Delete"), jobs, KEEP_NONE)
    assert not any(w.startswith("delete") for w in api.writes), "the Job is the only record of that success"


def test_retain_keeps_succeeded_jobs() -> None:
    api = FakeApi()
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    run(api, body(partitioned(2)), jobs)
    assert api.patches and not any(w.startswith("delete") for w in api.writes)


def test_with_delete_a_pass_reads_the_workflow_fresh_and_never_reruns_a_deleted_partition() -> None:
    """The watch's copy lags: it has not seen the status recording p0, whose Job is deleted."""
    watched = partitioned(2)
    recorded = run_once(partitioned(2), [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED)])
    api = FakeApi(server=body(recorded, maxConcurrency=2, succeededJobs="Delete"))
    run(api, body(watched, maxConcurrency=2, succeededJobs="Delete"), [partitioner(JobState.SUCCEEDED)])
    assert "create wf-p0-a1" not in api.writes, api.writes
    assert api.writes == ["create wf-p1-a1", "patch"]


def test_a_finished_workflow_deletes_what_it_owes_without_its_secret_or_a_status_write() -> None:
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    done = run_once(partitioned(2), jobs)
    done.manifest = "s3://processed/daily/_paraflow/uid-1/manifest.json"
    api = FakeApi(secret=False)
    events = run(api, body(done, succeededJobs="Delete"), jobs)
    assert sorted(api.writes) == ["delete wf-p0-a1", "delete wf-p1-a1"], "no patch, no Blocked"
    assert events == []


def test_a_refused_delete_keeps_the_passs_status_and_events() -> None:
    api = FakeApi(refuse_delete=True)
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    events = run(api, body(partitioned(2), succeededJobs="Delete"), jobs, KEEP_NONE)
    assert api.patches and api.patches[0]["phase"] == "Succeeded"
    assert ("Normal", "Succeeded") in [(e.type, e.reason) for e in events], "the Event is not lost to the 403"


def run_once(status: WorkflowStatus, jobs: list[Any]) -> WorkflowStatus:
    """The status one pass writes."""
    return planner.plan(make_spec(maxConcurrency=2), status, observe(*jobs)).status


def test_stalled_jobs_are_asked_about_in_one_round_per_stall_period_not_every_pass() -> None:
    """A busy cluster: every Job has waited longer than stall_seconds for its pod."""
    waiting = [
        dataclasses.replace(part(p, 1, JobState.ACTIVE), stalled=True, created_at=T0 - dt.timedelta(seconds=30))
        for p in range(6)
    ]
    api = FakeApi()
    reconciler = Reconciler(api, Settings(stall_seconds=8), emit=lambda _, e: None, clock=lambda: T0)  # type: ignore[arg-type]
    wf = body(partitioned(6), maxConcurrency=6)
    api.server = wf

    async def passes() -> None:
        for _ in range(5):
            await reconciler.reconcile(wf, [partitioner(JobState.SUCCEEDED), *waiting])

    asyncio.run(passes())
    assert api.asked == ["wf-p0-a1", "wf-p1-a1", "wf-p2-a1"], "one round of three, then quiet until 8 s have passed"


def test_a_forgotten_workflow_takes_its_secret_and_storage_client_along_unless_another_uses_them() -> None:
    api = FakeApi()
    reconciler = Reconciler(api, Settings(), emit=lambda _, e: None, clock=lambda: T0)  # type: ignore[arg-type]
    first, second = body(), body()
    second["metadata"] = {**second["metadata"], "name": "wf2", "uid": "uid-2"}
    for wf in (first, second):
        api.server = wf
        asyncio.run(reconciler.reconcile(wf, []))
    assert len(reconciler._secrets) == 1 and len(reconciler._clients) == 1, "one Secret, one client, shared"
    reconciler.forget("uid-1")
    assert len(reconciler._secrets) == 1 and len(reconciler._clients) == 1, "uid-2 still uses them"
    reconciler.forget("uid-2")
    assert reconciler._secrets == {} and reconciler._clients == {}


NO_QUOTA = {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "insufficient quota for cpu"}


def queued_passes(api: FakeApi, passes: int) -> list[str]:
    """Status messages of ``passes`` passes over three partitions that all wait in Kueue's queue."""
    waiting = [
        dataclasses.replace(
            part(p, 1, JobState.ACTIVE), queued=True, uid=f"job-{p}", created_at=T0 - dt.timedelta(seconds=3 - p)
        )
        for p in range(3)
    ]
    reconciler = Reconciler(api, Settings(stall_seconds=8), emit=lambda _, e: None, clock=lambda: T0)  # type: ignore[arg-type]
    wf = body(partitioned(3), maxConcurrency=3, queueName="team-a")
    api.server = wf

    async def run_passes() -> None:
        for _ in range(passes):
            await reconciler.reconcile(wf, [partitioner(JobState.SUCCEEDED), *waiting])

    asyncio.run(run_passes())
    return [p.get("message", "") for p in api.patches]


def test_the_oldest_queued_job_s_workload_is_read_once_per_stall_period_and_its_words_reach_the_status() -> None:
    api = FakeApi()
    api.workloads = [{"status": {"conditions": [NO_QUOTA]}}]
    messages = queued_passes(api, 4)
    assert api.workloads_read == ["job-0"], "the oldest, once, then quiet until 8 s have passed"
    assert messages and messages[0].endswith("LocalQueue team-a: insufficient quota for cpu")


def test_without_kueue_s_api_a_queued_run_still_says_it_waits() -> None:
    api = FakeApi()
    api.workloads = ApiException(status=404, reason="Not Found")
    messages = queued_passes(api, 1)
    assert messages == ["3 Job(s) wait for admission in Kueue LocalQueue team-a"]
