"""ParallelWorkflowSchedules on the real apiserver, with the schedule's clock driven by the test:
the reconciler the operator runs, given an injected clock, against real objects. Its runs live in
a namespace no test operator watches, so they stay as made, and the test ends them by writing
their status, as the operator would."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from minio import Minio

from paraflow import constants as c
from paraflow import cron, hooks
from paraflow.k8s.api import KubeApi
from paraflow.planning.actions import Event
from paraflow.planning.schedule import ScheduleRef, run_body, run_name
from paraflow.reasons import Reason
from paraflow.schedule_models import ScheduleSpec
from paraflow.schedule_reconciler import ScheduleReconciler
from tests.e2e.test_cli import cli
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import upload_inputs, wait_event, wait_phase, workflow

pytestmark = pytest.mark.cluster

HOURLY = "0 * * * *"


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def quiet_namespace(core: client.CoreV1Api, crd: None) -> Iterator[str]:
    """A namespace no test operator watches: a run stays as the schedule made it."""
    name = f"sched-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret(
        name, {"metadata": {"name": "hook-key"}, "data": {"key": base64.b64encode(b"s3cret").decode()}}
    )
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def template(**spec: Any) -> dict[str, Any]:
    body = workflow("unused", "http://127.0.0.1:19000", "raw", **spec)["spec"]
    body["input"]["prefix"] = 'logs/{{ scheduledTime | date "%Y/%m/%d/%H" }}/'
    return body


def create_schedule(custom: client.CustomObjectsApi, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": c.SCHEDULE_KIND,
        "metadata": {"name": name},
        "spec": {"schedule": HOURLY, "workflowTemplate": {"spec": template()}, **spec},
    }
    made: dict[str, Any] = custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.SCHEDULE_PLURAL, body)
    return made


def schedule_of(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.SCHEDULE_PLURAL, name)
    return got


def runs_of(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, dict[str, Any]]:
    listed = custom.list_namespaced_custom_object(
        c.GROUP, c.VERSION, ns, c.PLURAL, label_selector=f"{c.LABEL_SCHEDULE}={name}"
    )
    return {r["metadata"]["name"]: r for r in listed["items"] if not r["metadata"].get("deletionTimestamp")}


def end_run(custom: client.CustomObjectsApi, ns: str, run: str, phase: str, at: dt.datetime) -> None:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    custom.patch_namespaced_custom_object_status(
        c.GROUP,
        c.VERSION,
        ns,
        c.PLURAL,
        run,
        {"status": {"phase": phase, "startTime": stamp, "completionTime": stamp, "partitions": {"total": 2}}},
    )


def first_slot(created: dict[str, Any]) -> dt.datetime:
    made = dt.datetime.fromisoformat(created["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    return next(cron.slots(HOURLY, "Etc/UTC", made))


class Operator:
    """The schedule reconciler as the operator runs it, on a clock the test moves."""

    def __init__(self, kube: client.ApiClient, clock: Clock, deliver: Callable[..., Any] = hooks.deliver) -> None:
        self.events: list[Event] = []
        self.api = KubeApi(kube, 4, 100.0, write_burst=100, request_timeout=30)
        self.reconciler = ScheduleReconciler(
            self.api, lambda _, event: self.events.append(event), clock=clock, deliver=deliver
        )

    async def pass_(self, custom: client.CustomObjectsApi, ns: str, name: str) -> float | None:
        """One pass, and the reports it started (webhooks run beside the passes)."""
        wait = await self.reconciler.reconcile(schedule_of(custom, ns, name))
        await self.reconciler.settle()
        return wait

    def run(self, custom: client.CustomObjectsApi, ns: str, name: str) -> float | None:
        return asyncio.run(self.pass_(custom, ns, name))

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def test_a_schedule_fires_on_its_cron_and_its_run_is_the_template_with_the_slot_filled_in(
    kube: client.ApiClient, custom: client.CustomObjectsApi, quiet_namespace: str
) -> None:
    made = create_schedule(custom, quiet_namespace, "hourly")
    slot, clock = first_slot(made), Clock()
    clock.now = slot - dt.timedelta(seconds=30)
    op = Operator(kube, clock)
    wait = op.run(custom, quiet_namespace, "hourly")
    assert runs_of(custom, quiet_namespace, "hourly") == {}, "not before its slot"
    assert wait == pytest.approx(30)
    clock.now = slot + dt.timedelta(seconds=5)
    op.run(custom, quiet_namespace, "hourly")
    runs = runs_of(custom, quiet_namespace, "hourly")
    assert list(runs) == [run_name("hourly", slot)]
    run = runs[run_name("hourly", slot)]
    assert run["spec"]["input"]["prefix"] == f"logs/{slot:%Y/%m/%d/%H}/"
    assert run["metadata"]["ownerReferences"][0]["uid"] == made["metadata"]["uid"]
    status = schedule_of(custom, quiet_namespace, "hourly")["status"]
    assert status["lastScheduleTime"] == f"{slot:%Y-%m-%dT%H:%M:%SZ}"
    assert status["nextScheduleTime"] == f"{slot + dt.timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"
    assert status["active"] == [run_name("hourly", slot)] and status["activeRuns"] == 1
    op.run(custom, quiet_namespace, "hourly")
    assert len(runs_of(custom, quiet_namespace, "hourly")) == 1, "a slot runs once"
    assert op.reasons() == [Reason.RUN_STARTED]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("Forbid", {"first"}), ("Replace", {"second"}), ("Allow", {"first", "second"})],
)
def test_concurrency_policies_under_a_slow_run(
    kube: client.ApiClient, custom: client.CustomObjectsApi, quiet_namespace: str, policy: str, expected: set[str]
) -> None:
    made = create_schedule(custom, quiet_namespace, "slow", concurrencyPolicy=policy)
    slot, clock = first_slot(made), Clock()
    clock.now = slot + dt.timedelta(seconds=5)
    op = Operator(kube, clock)
    op.run(custom, quiet_namespace, "slow")
    clock.now = slot + dt.timedelta(hours=1, seconds=5)  # the first run has not ended
    op.run(custom, quiet_namespace, "slow")
    names = {"first": run_name("slow", slot), "second": run_name("slow", slot + dt.timedelta(hours=1))}
    want = {names[k] for k in expected}
    wait_for(lambda: set(runs_of(custom, quiet_namespace, "slow")) == want or None, 30, f"runs {want}")
    status = schedule_of(custom, quiet_namespace, "slow")["status"]
    if policy == "Forbid":
        assert "waits for run" in status["message"]
        end_run(custom, quiet_namespace, names["first"], "Succeeded", clock.now)
        op.run(custom, quiet_namespace, "slow")
        assert set(runs_of(custom, quiet_namespace, "slow")) == set(names.values()), "it ran once the first ended"
    if policy == "Replace":
        assert Reason.RUN_REPLACED in op.reasons()


def test_downtime_across_slots_catches_up_within_the_deadline_and_reports_the_older_slot(
    kube: client.ApiClient, custom: client.CustomObjectsApi, quiet_namespace: str
) -> None:
    made = create_schedule(custom, quiet_namespace, "catchup", concurrencyPolicy="Allow", startingDeadlineSeconds=5400)
    slot, clock = first_slot(made), Clock()
    clock.now = slot + dt.timedelta(hours=2, minutes=5)  # down from before the first slot until now
    op = Operator(kube, clock)
    op.run(custom, quiet_namespace, "catchup")
    later = [slot + dt.timedelta(hours=h) for h in (1, 2)]
    assert set(runs_of(custom, quiet_namespace, "catchup")) == {run_name("catchup", s) for s in later}
    missed = [e for e in op.events if e.reason == Reason.SLOTS_MISSED]
    assert len(missed) == 1 and f"{slot:%Y-%m-%dT%H:%M:%SZ}" in missed[0].message


def test_two_replicas_at_the_moment_of_a_slot_start_it_once(
    kube: client.ApiClient, custom: client.CustomObjectsApi, quiet_namespace: str
) -> None:
    """A hand-over at the slot: the old leader's pass and the new one's both decide the slot."""
    made = create_schedule(custom, quiet_namespace, "handover", concurrencyPolicy="Allow")
    slot, clock = first_slot(made), Clock()
    clock.now = slot + dt.timedelta(seconds=1)
    old, new = Operator(kube, clock), Operator(kube, clock)

    async def both() -> None:
        body = schedule_of(custom, quiet_namespace, "handover")
        await asyncio.gather(old.reconciler.reconcile(body), new.reconciler.reconcile(body))

    asyncio.run(both())
    assert list(runs_of(custom, quiet_namespace, "handover")) == [run_name("handover", slot)]
    assert (old.reasons() + new.reasons()).count(Reason.RUN_STARTED) == 1, "one of them found it made"


def test_history_limits_keep_the_newest_runs_once_reported(
    kube: client.ApiClient, custom: client.CustomObjectsApi, quiet_namespace: str
) -> None:
    made = create_schedule(
        custom,
        quiet_namespace,
        "history",
        concurrencyPolicy="Allow",
        successfulRunsHistoryLimit=2,
        failedRunsHistoryLimit=1,
    )
    slot, clock = first_slot(made), Clock()
    clock.now = slot + dt.timedelta(hours=4, seconds=5)
    op = Operator(kube, clock)
    op.run(custom, quiet_namespace, "history")
    slots = [slot + dt.timedelta(hours=h) for h in range(5)]
    assert set(runs_of(custom, quiet_namespace, "history")) == {run_name("history", s) for s in slots}
    phases = ["Succeeded", "Failed", "Succeeded", "Failed", "Succeeded"]
    for s, phase in zip(slots, phases, strict=True):
        end_run(custom, quiet_namespace, run_name("history", s), phase, clock.now)
    op.run(custom, quiet_namespace, "history")  # reports all five
    op.run(custom, quiet_namespace, "history")  # now they may go
    kept = {run_name("history", slots[i]) for i in (2, 3, 4)}
    wait_for(lambda: set(runs_of(custom, quiet_namespace, "history")) == kept or None, 30, f"only {kept}")
    assert op.reasons().count(Reason.RUN_SUCCEEDED) == 3 and op.reasons().count(Reason.RUN_FAILED) == 2


class Receiver:
    """A webhook endpoint whose answers the test scripts: a status code, or no answer at all."""

    def __init__(self, answers: list[int | None]) -> None:
        self.answers = answers
        self.bodies: list[tuple[bytes, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.append((body, dict(self.headers)))
                answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer is None:
                    time.sleep(3)  # never answers within the hook's timeout
                    return
                self.send_response(answer)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()


async def no_backoff(_: float) -> None:
    return None


def deliver_fast(hook: Any, summary: dict[str, Any], **kwargs: Any) -> Any:
    return hooks.deliver(hook, summary, sleep=no_backoff, **kwargs)


@pytest.mark.parametrize(("answers", "result"), [([500, 200], "Delivered"), ([None, None], "Failed")])
def test_the_webhook_is_signed_retried_recorded_and_never_changes_the_run(
    kube: client.ApiClient,
    custom: client.CustomObjectsApi,
    quiet_namespace: str,
    answers: list[int | None],
    result: str,
) -> None:
    receiver = Receiver(list(answers))
    try:
        hook = {
            "webhook": {
                "url": receiver.url,
                "signingSecret": {"name": "hook-key", "key": "key"},
                "timeoutSeconds": 1,
                "maxAttempts": 2,
            }
        }
        made = create_schedule(custom, quiet_namespace, "hooked", hook=hook)
        slot, clock = first_slot(made), Clock()
        clock.now = slot + dt.timedelta(seconds=5)
        op = Operator(kube, clock, deliver=deliver_fast)
        op.run(custom, quiet_namespace, "hooked")
        run = run_name("hooked", slot)
        end_run(custom, quiet_namespace, run, "Failed", clock.now)
        op.run(custom, quiet_namespace, "hooked")
    finally:
        receiver.close()
    assert len(receiver.bodies) == 2, "one retry"
    body, headers = receiver.bodies[-1]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Paraflow-Signature"] == expected
    summary = json.loads(body)
    assert summary["workflow"] == run and summary["phase"] == "Failed" and summary["schedule"] == "hooked"
    assert summary["scheduledTime"] == f"{slot:%Y-%m-%dT%H:%M:%SZ}"
    delivery = schedule_of(custom, quiet_namespace, "hooked")["status"]["deliveries"][-1]
    assert (delivery["run"], delivery["result"], delivery["attempts"]) == (run, result, 2)
    ended = runs_of(custom, quiet_namespace, "hooked")[run]
    assert ended["status"]["phase"] == "Failed", "the hook changes nothing of the run"
    assert ended["metadata"]["annotations"][c.ANNOTATION_REPORTED] == result
    assert (Reason.HOOK_FAILED in op.reasons()) == (result == "Failed")


def test_backfill_over_seven_days_respects_max_concurrent_and_is_idempotent(
    custom: client.CustomObjectsApi, quiet_namespace: str
) -> None:
    create_schedule(custom, quiet_namespace, "daily", schedule="@daily", concurrencyPolicy="Allow")
    most_active = 0
    stop = threading.Event()

    def finish_runs() -> None:
        """Plays the operator for the runs: each ends half a second after it appears."""
        nonlocal most_active
        seen: dict[str, float] = {}
        while not stop.is_set():
            active = {n for n, r in runs_of(custom, quiet_namespace, "daily").items() if "status" not in r}
            most_active = max(most_active, len(active))
            for name in active:
                if time.monotonic() - seen.setdefault(name, time.monotonic()) > 0.5:
                    end_run(custom, quiet_namespace, name, "Succeeded", dt.datetime.now(dt.UTC))
            time.sleep(0.1)

    player = threading.Thread(target=finish_runs, daemon=True)
    player.start()
    try:
        args = ["backfill", "daily", "-n", quiet_namespace, "--from", "2026-11-01", "--to", "2026-11-07"]
        first = cli(*args, "--max-concurrent", "2", "--poll", "0.2")
        again = cli(*args, "--max-concurrent", "2", "--poll", "0.2")
    finally:
        stop.set()
        player.join()
    days = [dt.datetime(2026, 11, d, tzinfo=dt.UTC) for d in range(1, 8)]
    assert set(runs_of(custom, quiet_namespace, "daily")) == {run_name("daily", d) for d in days}
    assert 1 <= most_active <= 2
    assert "7 slot(s) from 2026-11-01 00:00 to 2026-11-07 23:59 (Etc/UTC): 7 started, 0 already" in first.stderr
    assert "0 started, 7 already had a run; 7 succeeded, 0 failed" in again.stderr


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"schedule": "61 * * * *"}, "spec.schedule"),
        ({"workflowTemplate": {"spec": {**template(), "input": {"bucket": "raw", "prefix": "{{ now }}/"}}}}, "param"),
        ({"workflowTemplate": {"spec": {**template(), "maxConcurrency": 0}}}, "maxConcurrency"),
        ({"timeZone": "x" * 65}, "timeZone"),
    ],
)
def test_bad_input_is_refused_at_admission(
    custom: client.CustomObjectsApi, quiet_namespace: str, spec: dict[str, Any], says: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create_schedule(custom, quiet_namespace, "bad", **spec)
    assert refused.value.status == 422
    assert says in refused.value.body


def test_a_template_the_apiserver_cannot_judge_is_refused_by_the_operator_naming_the_field(
    kube: client.ApiClient, custom: client.CustomObjectsApi, quiet_namespace: str
) -> None:
    """An impossible date and a parameter in an env value pass the schema; the operator says why."""
    spec = {**template(), "processor": {**template()["processor"], "env": [{"name": "D", "value": "{{ now }}"}]}}
    create_schedule(custom, quiet_namespace, "unjudged", workflowTemplate={"spec": spec})
    op = Operator(kube, Clock())
    op.run(custom, quiet_namespace, "unjudged")
    assert op.reasons() == [Reason.INVALID_SCHEDULE]
    assert "processor.env[].value" in schedule_of(custom, quiet_namespace, "unjudged")["status"]["message"]
    assert runs_of(custom, quiet_namespace, "unjudged") == {}


def test_the_run_is_made_by_the_same_code_as_the_cli_s(custom: client.CustomObjectsApi, quiet_namespace: str) -> None:
    """`paraflow schedule trigger` makes the run the operator would make for that minute."""
    made = create_schedule(custom, quiet_namespace, "manual", suspend=True)
    before = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    out = cli("schedule", "trigger", "manual", "-n", quiet_namespace)
    runs = runs_of(custom, quiet_namespace, "manual")
    assert len(runs) == 1, out.stderr
    ((name, run),) = runs.items()
    slot = dt.datetime.fromisoformat(run["metadata"]["annotations"][c.ANNOTATION_SLOT].replace("Z", "+00:00"))
    assert slot >= before
    ref = ScheduleRef("manual", quiet_namespace, made["metadata"]["uid"])
    expected = run_body(ref, ScheduleSpec.model_validate(made["spec"]), slot)
    assert name == expected["metadata"]["name"] and run["spec"]["input"] == expected["spec"]["input"]


def test_the_operator_runs_a_schedule_and_reports_its_triggered_run_when_it_ends(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    bucket: str,
    namespace: str,
    test_env: dict[str, str],
) -> None:
    """The whole path through the operator process: its schedule loop writes the next slot, a
    triggered run really runs, and its end is told on the schedule (Event, mark, last success)."""
    upload_inputs(s3, bucket, 4, prefix="day/")
    spec = workflow("unused", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket)["spec"]
    spec["input"]["prefix"] = "day/"
    spec["output"]["prefix"] = 'out/{{ scheduledTime | date "%Y%m%d%H%M" }}/'
    create_schedule(custom, namespace, "yearly", schedule="@yearly", workflowTemplate={"spec": spec})
    wait_for(
        lambda: (schedule_of(custom, namespace, "yearly").get("status") or {}).get("nextScheduleTime"),
        30,
        "the operator's first pass over the schedule",
    )
    cli("schedule", "trigger", "yearly", "-n", namespace)
    (run,) = runs_of(custom, namespace, "yearly")
    wait_phase(custom, namespace, run, {"Succeeded"}, 180)
    wait_event(core, namespace, "yearly", "Normal", Reason.RUN_SUCCEEDED, 60)
    reported = wait_for(
        lambda: (runs_of(custom, namespace, "yearly")[run]["metadata"].get("annotations") or {}).get(
            c.ANNOTATION_REPORTED
        ),
        30,
        "the run marked reported",
    )
    assert reported == "NoHook"
    assert schedule_of(custom, namespace, "yearly")["status"].get("lastSuccessfulTime")
