"""Logs that outlive their pods: the tail kept within its bound, the Jobs whose logs are owed, and
the reconciler storing them before any delete, holding the deletes and the TTL while it cannot."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from paraflow.cli.keptlogs import KeptLog
from paraflow.k8s.api import JobRefused
from paraflow.k8s.podlogs import Tail, terminated_state
from paraflow.models import WorkflowStatus
from paraflow.planning import logs, planner
from paraflow.planning.planner import JobState
from paraflow.reconciler import Reconciler
from paraflow.settings import Settings
from paraflow.storage.runstore import StorageUnavailable
from tests.unit.builders import T0, make_spec
from tests.unit.test_planner import observe, part, partitioned, partitioner
from tests.unit.test_reconciler import FakeApi, body

pytestmark = pytest.mark.unit


@given(chunks=st.lists(st.binary(max_size=300), max_size=40), limit=st.integers(1, 500))
def test_the_tail_is_the_log_s_end_within_its_bound_starting_at_a_whole_line(chunks: list[bytes], limit: int) -> None:
    whole = b"".join(chunks)
    tail = Tail(limit)
    for chunk in chunks:
        tail.feed(chunk)
        assert len(tail._kept) <= 2 * limit + len(chunk), "memory stays bounded by the limit, not the log"
    text = tail.text()
    assert tail.total == len(whole) and whole.endswith(text) and len(text) <= limit
    if len(whole) <= limit:
        assert text == whole
    elif b"\n" in whole[-limit:-1]:
        assert whole[len(whole) - len(text) - 1 : len(whole) - len(text)] == b"\n", "cut at a line's start"


def test_the_container_s_end_is_recorded_with_its_log() -> None:
    pod = {
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "processor", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}],
        }
    }
    assert terminated_state(pod, "processor") == {"pod-phase": "Failed", "exit-code": "3", "reason": "Error"}


def test_a_kept_log_says_it_is_a_copy_how_its_container_ended_and_what_was_cut() -> None:
    headers = {"X-Amz-Meta-Paraflow-Total-Bytes": str(50 * 2**20), "X-Amz-Meta-Paraflow-Exit-Code": "3"}
    log = KeptLog.read("wf-p1-a1-0-abcde", b"x" * 65536, headers | {"X-Amz-Meta-Paraflow-Reason": "Error"})
    assert log.describe() == "(the copy the operator kept: exit 3 (Error), its last 64.0 KiB of 50.0 MiB)"


@pytest.mark.parametrize(("keep", "owed"), [("failed", ["wf-p1-a1"]), ("all", ["wf-p0-a1", "wf-p1-a1"]), ("none", [])])
def test_the_logs_owed_are_those_spec_logs_keep_names_of_finished_jobs_not_kept_yet(keep: str, owed: list[str]) -> None:
    spec = make_spec(logs={"keep": keep})
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.FAILED), part(2, 1, JobState.ACTIVE)]
    assert [j.name for j in logs.owed(spec, jobs, set())] == owed
    assert logs.owed(spec, jobs, set(owed)) == []


def test_a_finished_run_is_not_settled_while_it_owes_logs_and_a_pass_asks_for_them() -> None:
    spec = make_spec(failureTolerance={"count": 1})
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.FAILED), part(1, 1, JobState.SUCCEEDED)]
    jobs[1] = dataclasses.replace(jobs[1], retryable=False)
    result = planner.plan(spec, partitioned(2), observe(*jobs))
    assert result.keep_logs == ["wf-p0-a1"]
    result.status.manifest = "s3://x"
    assert not planner.settled(spec, result.status, jobs, redrive_token="", logs_kept=set())
    assert planner.settled(spec, result.status, jobs, redrive_token="", logs_kept={"wf-p0-a1"})


class LogApi(FakeApi):
    """Pods with logs, and storage that can be down."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage_down = False
        self.stored: dict[str, bytes] = {}

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return [{"metadata": {"name": f"{job}-0-x"}, "spec": {"containers": [{"name": "processor"}]}, "status": {}}]

    async def pod_log(self, namespace: str, pod: str, *, container: str, limit: int) -> Tail:
        tail = Tail(limit)
        tail.feed(f"log of {pod}\n".encode())
        return tail

    async def offload(self, fn: Any, *args: Any, writes: bool = False, **kwargs: Any) -> Any:
        if fn.__name__ == "kept_logs":
            return set()
        if fn.__name__ == "keep_pod_log":
            if self.storage_down:
                raise StorageUnavailable("cannot reach MinIO: connection refused")
            self.stored[args[2]] = kwargs["data"]
            self.writes.append(f"keep {args[2].rsplit('/', 2)[1]}")
            return None
        return await super().offload(fn, *args, writes=writes, **kwargs)


def one_pass(api: LogApi, status: WorkflowStatus, jobs: list[Any], **spec: Any) -> float | None:
    wf = body(status, **spec)
    api.server = wf
    reconciler = Reconciler(api, Settings(), emit=lambda _, e: None, clock=lambda: T0 + dt.timedelta(hours=1))  # type: ignore[arg-type]
    return asyncio.run(reconciler.reconcile(wf, jobs))


def test_the_logs_of_a_job_are_stored_before_it_is_deleted_and_a_delete_waits_while_they_cannot_be() -> None:
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    spec = {"succeededJobs": "Delete", "logs": {"keep": "all"}, "maxConcurrency": 2}
    api = LogApi()
    one_pass(api, partitioned(2), jobs, **spec)  # the run succeeds: its partition Jobs go
    for job in ("wf-p0-a1", "wf-p1-a1"):
        assert api.writes.index("patch") < api.writes.index(f"keep {job}") < api.writes.index(f"delete {job}")
    assert api.stored["daily/_paraflow/uid-1/logs/wf-p0-a1/wf-p0-a1-0-x.log"] == b"log of wf-p0-a1-0-x\n"

    down = LogApi()
    down.storage_down = True
    delay = one_pass(down, partitioned(2), jobs, **spec)
    assert not any(w.startswith("delete") for w in down.writes), "no delete while its logs are owed"
    assert delay is not None and delay <= 10


def test_a_finished_run_with_a_ttl_is_not_deleted_while_its_logs_cannot_be_stored() -> None:
    jobs = [partitioner(JobState.SUCCEEDED), dataclasses.replace(part(0, 1, JobState.FAILED), retryable=False)]
    failed = planner.plan(make_spec(), partitioned(1), observe(*jobs)).status
    failed.manifest = "s3://x"
    api = LogApi()
    api.storage_down = True
    deleted: list[str] = []

    async def delete_workflow(namespace: str, name: str, uid: str) -> None:
        deleted.append(name)

    api.delete_workflow = delete_workflow  # type: ignore[method-assign]
    one_pass(api, failed, jobs, ttlSecondsAfterFinished=0)
    assert deleted == [], "the TTL waits for the failed partition's logs"
    api.storage_down = False
    one_pass(api, failed, jobs, ttlSecondsAfterFinished=0)
    assert deleted == ["wf"]
    assert any(k.endswith("/logs/wf-p0-a1/wf-p0-a1-0-x.log") for k in api.stored)


def test_a_pod_that_never_started_has_no_log_to_keep_and_does_not_hold_anything() -> None:
    api = LogApi()

    async def no_log(namespace: str, pod: str, *, container: str, limit: int) -> Tail:
        raise ApiException(status=400, reason='container "processor" in pod is waiting to start')

    api.pod_log = no_log  # type: ignore[method-assign]
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED)]
    one_pass(api, partitioned(1), jobs, succeededJobs="Delete", logs={"keep": "all"})
    assert "delete wf-p0-a1" in api.writes and api.stored == {}


def test_a_child_job_the_apiserver_refuses_as_invalid_fails_the_run_saying_why() -> None:
    why = 'Job.batch "wf-part-a1" is invalid: spec.template.spec.containers[0].volumeMounts[0].name: Not found'
    refused = JobRefused(why)  # what KubeApi.create_job raises for the apiserver's 422

    class Refusing(LogApi):
        async def create_job(self, body: dict[str, Any]) -> bool:
            raise refused

    api = Refusing()
    events: list[Any] = []
    wf = body()
    api.server = wf
    reconciler = Reconciler(api, Settings(), emit=lambda _, e: events.append(e), clock=lambda: T0)  # type: ignore[arg-type]
    asyncio.run(reconciler.reconcile(wf, []))
    status = api.patches[-1]
    assert status["phase"] == "Failed" and "volumeMounts[0].name: Not found" in status["message"]
    assert ("Warning", "JobRefused") in [(e.type, e.reason) for e in events]


def test_jobs_whose_logs_wait_for_a_later_pass_are_not_deleted_and_the_ttl_waits_for_them() -> None:
    """More finished Jobs than one pass keeps logs of: the rest stay, and so does the workflow."""
    total = logs.PER_PASS + 5
    jobs = [partitioner(JobState.SUCCEEDED), *(part(p, 1, JobState.SUCCEEDED) for p in range(total))]
    api = LogApi()
    deleted: list[str] = []

    async def delete_workflow(namespace: str, name: str, uid: str) -> None:
        deleted.append(name)

    api.delete_workflow = delete_workflow  # type: ignore[method-assign]
    spec = {"succeededJobs": "Delete", "logs": {"keep": "all"}, "maxConcurrency": total, "ttlSecondsAfterFinished": 0}
    one_pass(api, partitioned(total), jobs, **spec)
    kept = {w.split()[1] for w in api.writes if w.startswith("keep")}
    gone = {w.split()[1] for w in api.writes if w.startswith("delete")}
    assert len(kept) == logs.PER_PASS and gone <= kept, "a Job goes only once its logs are stored"
    assert deleted == [], "the TTL waits for the logs still owed"


def test_a_job_whose_logs_cannot_be_stored_five_passes_in_a_row_is_given_up_with_a_warning_and_then_deleted() -> None:
    """No right to read a pod's log (a 403 every time): the Job stays while its logs are retried,
    and on the fifth failure in a row a LogsNotKept Warning names it and its delete goes ahead."""
    jobs = [partitioner(JobState.SUCCEEDED), part(0, 1, JobState.SUCCEEDED)]
    api = LogApi()

    async def forbidden(namespace: str, pod: str, *, container: str, limit: int) -> Tail:
        raise ApiException(status=403, reason="Forbidden")

    api.pod_log = forbidden  # type: ignore[method-assign]
    events: list[Any] = []
    wf = body(partitioned(1), succeededJobs="Delete", logs={"keep": "all"})
    api.server = wf
    reconciler = Reconciler(api, Settings(), emit=lambda _, e: events.append(e), clock=lambda: T0)  # type: ignore[arg-type]
    for attempt in range(1, logs.TRIES):
        asyncio.run(reconciler.reconcile(wf, jobs))
        assert not any(w.startswith("delete") for w in api.writes), f"deleted after {attempt} failed tries"
        assert not [e for e in events if e.reason == "LogsNotKept"]
    asyncio.run(reconciler.reconcile(wf, jobs))
    given_up = sorted((e.type, e.message.split(":")[0]) for e in events if e.reason == "LogsNotKept")
    assert given_up == [
        ("Warning", "the logs of Job wf-p0-a1 are not kept"),
        ("Warning", "the logs of Job wf-part-a1 are not kept"),
    ]
    assert "delete wf-p0-a1" in api.writes
