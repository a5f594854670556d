"""kopf wiring only: each handler guards and delegates.

- Child Jobs are watched by our own ``JobWatch`` (not kopf), into an index of compact JobFacts
  by workflow uid; no pass runs before every watched namespace has been listed.
- Workflow events, and Job changes that matter to a plan, wake the workflow's loop
  (``paraflow.loops``); the loop does the work.
- Every replica watches; only the holder of the Lease (``paraflow.leadership``) runs passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import math
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import kopf
from aiohttp import web
from kubernetes import client, config

from paraflow import constants as c
from paraflow import endpoints, metrics
from paraflow.k8s.api import KubeApi
from paraflow.k8s.jobindex import JobIndex
from paraflow.k8s.jobwatch import JobWatch
from paraflow.k8s.leases import LeaseStore
from paraflow.leadership import Elector
from paraflow.loops import WorkflowLoops
from paraflow.models import TERMINAL
from paraflow.planning.planner import Event
from paraflow.reconciler import Reconciler
from paraflow.schedule_reconciler import ScheduleReconciler
from paraflow.settings import Settings

log = logging.getLogger(__name__)
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours = Settings()
    identity = _identity(ours)
    settings.posting.level = logging.INFO  # only our Events; kopf's own handler chatter stays in logs
    settings.posting.reporting_component = c.USER_AGENT_PRODUCT  # `kubectl describe`: "From paraflow-operator"
    # Events name the replica that wrote them (`kubectl describe`: "From paraflow-operator, <identity>").
    settings.posting.reporting_instance = identity
    settings.posting.event_name_prefix = "paraflow-event-"
    settings.watching.server_timeout = ours.watch_server_timeout_seconds
    settings.watching.client_timeout = ours.watch_client_timeout_seconds
    settings.networking.request_timeout = ours.api_request_timeout_seconds
    # Named namespaces (no patterns) need no scan for new ones; a Role-only ServiceAccount may
    # not list namespaces, and kopf retries that 403 for a minute before it serves anything.
    namespaces = memo.get("namespaces") or []
    settings.scanning.disabled = _named(namespaces)
    settings.persistence.finalizer = f"{c.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    elector = _elector(ours, identity) if ours.leader_election else None
    fence = elector.fence if elector is not None else _always
    api = KubeApi(
        _api_client(ours.api_threads, identity),
        ours.api_threads,
        ours.api_write_qps,
        write_burst=ours.api_write_burst,
        request_timeout=ours.api_request_timeout_seconds,
        fence=fence,
    )

    def emit(body: Mapping[str, Any], event: Event) -> None:
        fence()
        kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.bounded_message())

    reconciler = Reconciler(api, ours, emit=emit)
    index = JobIndex()
    loops = WorkflowLoops(
        reconciler.reconcile,
        index.jobs_of,
        ours.debounce_seconds,
        backoff=ours.error_backoff_seconds,
        backoff_max=ours.error_backoff_max_seconds,
        on_forget=reconciler.forget,
    )
    scheduler = ScheduleReconciler(api, emit)
    schedules = WorkflowLoops(
        scheduler.reconcile,
        lambda _: [],
        ours.debounce_seconds,
        backoff=ours.error_backoff_seconds,
        backoff_max=ours.error_backoff_max_seconds,
    )
    jobs = JobWatch(
        _api_client(len(namespaces) + 1, identity),
        _job_scopes(namespaces),
        index,
        wake=loops.wake,
        server_timeout=ours.watch_server_timeout_seconds,
        client_timeout=ours.watch_client_timeout_seconds,
    )
    # Resource handlers get shallow copies of this memo: the runtime stored here is shared by all.
    runtime = memo.runtime = Runtime(
        api=api, loops=loops, schedules=schedules, scheduler=scheduler, jobs=jobs, elector=elector
    )
    # `paraflow operator --liveness URL`, and the metrics port of the settings.
    runtime.http = await endpoints.serve(
        liveness=memo.get("liveness"), metrics_port=ours.metrics_port, state=runtime.health
    )
    jobs.start()
    await jobs.synced.wait()
    if elector is None:
        loops.activate()
        schedules.activate()
        return

    async def on_change(leading: bool) -> None:
        metrics.LEADER.set(int(leading))
        if leading:
            loops.activate()
            schedules.activate()
        else:
            await loops.deactivate()
            await schedules.deactivate()

    log.info("waiting for the Lease %s/%s as %s", _lease_namespace(ours), ours.lease_name, elector.identity)
    runtime.election = asyncio.create_task(elector.run(on_change), name="paraflow-lease")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop every pass and wait for the writes in flight, then free the Lease: a rolling update
    hands over at the standby's next try."""
    runtime = _runtime(memo)
    runtime.jobs.stop()
    if runtime.election is not None:
        runtime.election.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runtime.election
    await runtime.loops.stop()
    await runtime.schedules.stop()
    await runtime.scheduler.settle()  # webhooks in flight are delivered, not cut
    await asyncio.to_thread(runtime.api.close)
    if runtime.elector is not None:
        await asyncio.to_thread(runtime.elector.release)
    if runtime.http is not None:
        await runtime.http.cleanup()


@dataclass
class Runtime:
    """What startup built and every handler and cleanup uses (kept in kopf's memo)."""

    api: KubeApi
    loops: WorkflowLoops
    schedules: WorkflowLoops  # one loop per ParallelWorkflowSchedule, led like the workflows'
    scheduler: ScheduleReconciler
    jobs: JobWatch
    elector: Elector | None
    election: asyncio.Task[None] | None = None
    http: web.AppRunner | None = None

    def health(self) -> dict[str, Any]:
        """What /healthz reports; unhealthy once the election task has died (it would never lead)."""
        electing = self.election is None or not self.election.done()
        return {"healthy": electing, "leading": self.loops.active, "workflows": len(self.loops.loops)}


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


def _identity(ours: Settings) -> str:
    """This replica's name in the Lease, Events and user agent: PARAFLOW_IDENTITY (the chart sets
    the pod's name, which a restarted container keeps, so it re-takes its own Lease at once), or
    the host name with a suffix, so two processes on one host never share one."""
    return ours.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _api_client(pool_size: int, identity: str) -> client.ApiClient:
    conf = client.Configuration.get_default_copy()
    conf.connection_pool_maxsize = pool_size
    api_client = client.ApiClient(conf)
    # Our own user agent, naming the replica: audit logs and apiserver metrics tell the
    # operator's requests apart, and which replica sent each one.
    api_client.user_agent = f"{c.USER_AGENT_PRODUCT}/{importlib.metadata.version('paraflow')} ({identity})"
    return api_client


def _lease_namespace(ours: Settings) -> str:
    if ours.lease_namespace:
        return ours.lease_namespace
    try:
        return Path(SERVICE_ACCOUNT_NAMESPACE).read_text().strip() or "default"
    except OSError:
        return "default"


def _elector(ours: Settings, identity: str) -> Elector:
    timings = ours.lease_timings()
    store = LeaseStore(
        _api_client(1, identity), _lease_namespace(ours), ours.lease_name, request_timeout=timings.renew_deadline / 2
    )
    return Elector(store, identity, timings)


def _named(namespaces: list[str]) -> bool:
    """Only namespace names are given, no kopf patterns."""
    return bool(namespaces) and not any(set(ns) & set("*?[!") for ns in namespaces)


def _job_scopes(namespaces: list[str]) -> list[str | None]:
    """One Job watch per named namespace, else one over all of them (None): with patterns, Jobs
    elsewhere are indexed too, and never asked for."""
    return list[str | None](namespaces) if _named(namespaces) else [None]


def _always() -> float:
    """No leader election: this process is the only replica and may always write."""
    return math.inf


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def workflow_event(type: str, uid: str, body: kopf.Body, *, memo: kopf.Memo, **_: Any) -> None:
    runtime = _runtime(memo)
    # A run of a schedule ended or went: its schedule reports it, or starts a slot that waited.
    # Only then: a running run patches its status on every pass, and none of those matter here.
    schedule = (body.get("metadata", {}).get("labels") or {}).get(c.LABEL_SCHEDULE_UID)
    if schedule and (type == "DELETED" or (body.get("status") or {}).get("phase") in TERMINAL):
        runtime.schedules.wake(schedule)
    if type == "DELETED":
        await runtime.loops.forget(uid)
        return
    runtime.loops.observe(uid, body)


@kopf.on.event(c.GROUP, c.VERSION, c.SCHEDULE_PLURAL)
async def schedule_event(type: str, uid: str, body: kopf.Body, *, memo: kopf.Memo, **_: Any) -> None:
    schedules = _runtime(memo).schedules
    if type == "DELETED":
        await schedules.forget(uid)
        return
    schedules.observe(uid, body)
