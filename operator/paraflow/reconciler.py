"""One reconcile pass for one workflow: observe, plan (pure), apply, write status once.

The pass is the only place where the planner's decisions meet the cluster and MinIO. It is safe
to run at any moment and any number of times: creates are idempotent, the manifest write is
idempotent, and status is recomputed from observations each time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from minio import Minio
from pydantic import ValidationError

from paraflow import constants as c
from paraflow import metrics
from paraflow.k8s import builders, podlogs
from paraflow.k8s.api import JobRefused, KubeApi, SecretMissing
from paraflow.k8s.builders import WorkflowRef
from paraflow.k8s.merge import merge_patch
from paraflow.models import TERMINAL, StorageSpec, WorkflowSpec, WorkflowStatus, parse_bytes, spec_error
from paraflow.planning import gate, indexsets, logs, planner, queueing, stalls
from paraflow.planning.actions import Create
from paraflow.planning.expectations import Expectations
from paraflow.planning.observed import Admission
from paraflow.planning.planner import (
    Event,
    JobFacts,
    JobState,
    Observed,
    Plan,
    PlanRead,
    ReplicationTally,
)
from paraflow.planning.stalls import Stall
from paraflow.settings import Settings
from paraflow.storage import runstore
from paraflow.storage.runstore import Credentials, StorageUnavailable, UnsafeSpec
from paraflow_worker import contract

log = logging.getLogger(__name__)
Emit = Callable[[Mapping[str, Any], Event], None]
CREATE_CONCURRENCY = 16
# A pass that could not store owed logs (MinIO down) comes back this soon; deletes wait for it.
LOGS_RETRY_SECONDS = 10.0
SECRET_KEYS = ("accessKey", "secretKey")


@dataclass(frozen=True)
class _Seen:
    """The workflow as one pass found it."""

    body: Mapping[str, Any]
    wf: WorkflowRef
    before: WorkflowStatus
    jobs: Sequence[JobFacts]
    generation: int
    redrive: str
    now: dt.datetime

    def refused(self, problem: gate.Problem) -> Plan:
        return gate.refused(self.before, problem, generation=self.generation, redrive=self.redrive, now=self.now)

    def blocked(self, status: WorkflowStatus, error: SecretMissing | StorageUnavailable) -> Plan:
        problem = gate.Problem(error.reason, str(error))
        return gate.blocked(self.before, status, problem, generation=self.generation, now=self.now)


@dataclass(frozen=True)
class _Run:
    """A workflow whose spec is valid and whose Secret was read: what its storage reads use."""

    wf: WorkflowRef
    spec: WorkflowSpec
    client: Minio

    @property
    def bucket(self) -> str:
        return self.spec.output.bucket

    @property
    def prefix(self) -> str:
        return contract.run_prefix(self.spec.output.prefix, self.wf.uid)


@dataclass
class _CachedSecret:
    values: dict[str, str]
    fetched: float


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        settings: Settings,
        emit: Emit,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.api = api
        self.settings = settings
        self.emit = emit
        self.clock = clock
        self._secrets: dict[tuple[str, str], _CachedSecret] = {}
        self._clients: dict[Credentials, Minio] = {}
        # Secret -> the workflows that read it, and the credentials made from it: a Secret and
        # its clients go with the last workflow that used them.
        self._secret_users: dict[tuple[str, str], set[str]] = {}
        self._made_from: dict[tuple[str, str], set[Credentials]] = {}
        # Workflow uid -> stalled Job name -> when we last asked why it does not run.
        self._asked: dict[str, dict[str, float]] = {}
        # Workflow uid -> when we last read Kueue's Workload of a queued child, and what it said.
        self._admission: dict[str, tuple[float, Admission | None]] = {}
        # Workflow uid -> Jobs whose pods' logs are stored in its run prefix (listed once, then kept up).
        self._kept_logs: dict[str, set[str]] = {}
        # Workflow uid -> Job -> failed tries at storing its pods' logs.
        self._log_failures: dict[str, dict[str, int]] = {}
        # Workflow uid -> Jobs deleted that the watch still shows: not deleted again.
        self._deleted: dict[str, set[str]] = {}
        self.expectations = Expectations()

    async def reconcile(self, body: Mapping[str, Any], jobs: Sequence[JobFacts]) -> float | None:
        """Runs one pass; returns the seconds until the next pass is due without any event (None:
        none is, the workflow is finished and idle)."""
        seen = await self._observe_workflow(body, jobs)
        if seen is None:
            return None  # deleted; its DELETED event ends the loop
        try:
            spec = WorkflowSpec.model_validate(seen.body.get("spec") or {})
        except ValidationError as e:
            return await self._apply(seen, seen.refused(gate.invalid_spec(spec_error(e))))
        status = seen.before.model_copy(deep=True)
        status.run_prefix = f"s3://{spec.output.bucket}/{contract.run_prefix(spec.output.prefix, seen.wf.uid)}"
        status.output_prefix = (
            f"s3://{spec.output.bucket}/{contract.run_output_prefix(spec.output.prefix, seen.wf.uid)}"
        )
        recheck = gate.recheck_due(
            seen.before, generation=seen.generation, redrive=seen.redrive, has_jobs=bool(seen.jobs)
        )
        if not recheck and planner.settled(
            spec, seen.before, seen.jobs, redrive_token=seen.redrive, logs_kept=self._kept_logs.get(seen.wf.uid)
        ):
            return await self._idle(seen, spec)
        try:
            run = await self._reach(seen.wf, spec)
            if (not seen.jobs and seen.before.phase not in TERMINAL) or recheck:  # nothing started yet: check first
                await self._preflight(run)
            observed = await self._gather(seen, run, status)
        except UnsafeSpec as e:
            return await self._apply(seen, seen.refused(gate.Problem(e.reason, str(e))))
        except (SecretMissing, StorageUnavailable) as e:
            everything = frozenset(j.name for j in seen.jobs)
            if not recheck and planner.settled(
                spec, seen.before, seen.jobs, redrive_token=seen.redrive, logs_kept=everything
            ):
                # Finished, and only its logs were owed: without the storage they cannot be kept,
                # and its deletes and TTL must not wait for ever.
                self._kept_logs[seen.wf.uid] = set(everything)
                self.emit(seen.body, logs.not_kept(str(e)))
                return await self._idle(seen, spec)
            return await self._apply(seen, seen.blocked(status, e))
        started = gate.rechecked(status, redrive=seen.redrive) if recheck else None
        result = planner.plan(spec, status, observed)
        if started is not None:
            result.events.insert(0, started)
        if result.manifest is not None:
            # Before any Job is created: the run-wide replication reads it.
            try:
                result.status.manifest = await self._write_manifest(run, result)
            except StorageUnavailable as e:
                return await self._apply(seen, seen.blocked(status, e))
        try:
            return await self._apply(seen, result, run)
        except JobRefused as e:
            return await self._apply(seen, seen.refused(gate.Problem(e.reason, str(e))))

    async def _observe_workflow(self, body: Mapping[str, Any], jobs: Sequence[JobFacts]) -> _Seen | None:
        meta = body["metadata"]
        wf = WorkflowRef(meta["name"], meta["namespace"], meta["uid"])
        if (body.get("spec") or {}).get("succeededJobs") == "Delete":
            # Its deleted Jobs leave the status as the only record of their success, and the
            # watch's copy of the workflow may lag the Job watch (or, after a hand-over, this
            # replica's caches may lag what the last leader wrote): a pass on it would run those
            # partitions again. A quorum read is at least as new as every status written.
            fresh = await self.api.read_workflow(wf.namespace, wf.name)
            if fresh is None or fresh["metadata"]["uid"] != wf.uid:
                return None
            body, meta = fresh, fresh["metadata"]
        return _Seen(
            body=body,
            wf=wf,
            before=WorkflowStatus.from_body(body.get("status")),
            jobs=self.expectations.merge(wf.uid, jobs, time.monotonic()),
            generation=int(meta.get("generation", 0)),
            redrive=(meta.get("annotations") or {}).get(c.ANNOTATION_REDRIVE, ""),
            now=self.clock(),
        )

    async def _reach(self, wf: WorkflowRef, spec: WorkflowSpec) -> _Run:
        creds = await self._credentials(wf, spec.storage)
        return _Run(wf, spec, self._storage(creds))

    async def _gather(self, seen: _Seen, run: _Run, status: WorkflowStatus) -> Observed:
        """Everything the planner decides from: the Jobs, and what MinIO and the pods say."""
        plan_read = await self._read_plan(run, status, seen.jobs)
        reports = await self._read_reports(run, status, seen.jobs)
        reduce_records = await self._read_reduce_record(run, status, seen.jobs)
        asked, stall = await self._ask_why_stalled(seen.wf, seen.jobs, seen.now)
        admission = await self._ask_why_queued(seen.wf, seen.jobs)
        logs_kept = await self._logs_kept(run, seen.jobs)
        return Observed(
            jobs=seen.jobs,
            generation=seen.generation,
            now=seen.now,
            uid=seen.wf.uid,
            redrive_token=seen.redrive,
            plan=plan_read,
            reports=reports,
            reduce_records=reduce_records,
            max_creates=self.settings.max_creates_per_pass,
            kept_while_running=self.settings.succeeded_jobs_kept_while_running,
            stall_seconds=self.settings.stall_seconds,
            stall_asked=asked,
            stall=stall,
            admission=admission,
            logs_kept=logs_kept,
        )

    async def _apply(self, seen: _Seen, result: Plan, run: _Run | None = None) -> float | None:
        """Carries out a plan, in the order that keeps every crash safe: the Jobs, the status (once),
        its Events, and only then the deletes the written status allows. A pass that stopped early
        (refused, blocked) has no ``run``."""
        if run is not None:
            await self._create_children(run, result)
        await self._write_status(seen.wf, seen.before, result.status)
        metrics.observe(seen.wf.uid, result.status)
        for event in result.events:
            self.emit(seen.body, event)
        # Every Job whose logs are still owed (not stored, or not yet this pass's turn) stays, and
        # so does the workflow at its TTL.
        owed = await self._keep_logs(seen, run, result) if run is not None else set()
        await self._delete_succeeded(seen.wf, seen.jobs, [n for n in result.deletes if n not in owed])
        delay = min(result.requeue_after or self.settings.resync_seconds, self.settings.resync_seconds)
        if run is None:
            return delay
        if owed:
            return min(delay, LOGS_RETRY_SECONDS)
        left = await self._ttl(seen.wf, run.spec, result.status, now=seen.now)
        return delay if left is None else (None if left <= 0 else min(delay, left))

    async def _idle(self, seen: _Seen, spec: WorkflowSpec) -> float | None:
        """A finished, settled workflow: no Secret, no MinIO, no status write; only the succeeded
        Jobs it still has to delete (succeededJobs: Delete) and its TTL, if any."""
        metrics.observe(seen.wf.uid, seen.before)
        owed = planner.deletable(spec, seen.before, seen.jobs)
        await self._delete_succeeded(seen.wf, seen.jobs, owed[: planner.MAX_DELETES_PER_PASS])
        left = await self._ttl(seen.wf, spec, seen.before, now=seen.now)
        if len(owed) > planner.MAX_DELETES_PER_PASS:
            return planner.CAPPED_REQUEUE_SECONDS
        return None if left is None or left <= 0 else left

    async def _ttl(
        self, wf: WorkflowRef, spec: WorkflowSpec, status: WorkflowStatus, *, now: dt.datetime
    ) -> float | None:
        """Deletes the workflow once ``ttlSecondsAfterFinished`` is up; the seconds left (None: no TTL)."""
        left = planner.expires_in(spec, status, now)
        if left is not None and left <= 0:
            await self.api.delete_workflow(wf.namespace, wf.name, wf.uid)
        return left

    async def _credentials(self, wf: WorkflowRef, storage: StorageSpec) -> Credentials:
        key = (wf.namespace, storage.credentials_secret)
        self._secret_users.setdefault(key, set()).add(wf.uid)
        cached = self._secrets.get(key)
        if cached is None or time.monotonic() - cached.fetched > self.settings.secret_cache_seconds:
            values = await self.api.read_secret(wf.namespace, storage.credentials_secret, SECRET_KEYS)
            cached = self._secrets[key] = _CachedSecret(values, time.monotonic())
        creds = Credentials(storage.endpoint, cached.values["accessKey"], cached.values["secretKey"], storage.region)
        self._made_from.setdefault(key, set()).add(creds)
        return creds

    def _evict(self, uid: str) -> None:
        """Drops the Secrets only this workflow read, and the MinIO clients (with their
        connection pools) made from them that no other Secret still stands for."""
        for key in [k for k, users in self._secret_users.items() if users == {uid}]:
            del self._secret_users[key]
            self._secrets.pop(key, None)
            for creds in self._made_from.pop(key, set()):
                if not any(creds in made for made in self._made_from.values()):
                    # minio-py closes the client's pool when it is collected.
                    self._clients.pop(creds, None)
        for users in self._secret_users.values():
            users.discard(uid)

    def _storage(self, creds: Credentials) -> Minio:
        """One MinIO client (and connection pool) per endpoint and credentials, reused by every pass."""
        client = self._clients.get(creds)
        if client is None:
            client = self._clients[creds] = runstore.client_for(
                creds, self.settings.storage_timeout_seconds, self.settings.api_threads
            )
        return client

    async def _preflight(self, run: _Run) -> None:
        """Before anything starts: every bucket there, every destination reachable and not, under
        another endpoint name, the output itself."""
        wf, spec, client = run.wf, run.spec, run.client
        buckets = [b for b in (spec.input.bucket, spec.output.bucket) if b]  # no input bucket: inline items
        await self.api.offload(runstore.preflight, client, spec.storage.endpoint, buckets)
        if spec.replication is None:
            return
        targets = builders.replication_task(wf, spec, None, winner=0, label="preflight").targets
        for destination, target in zip(spec.replication.destinations, targets, strict=True):
            dest = self._storage(await self._credentials(wf, destination.storage or spec.storage))
            await self.api.offload(
                runstore.preflight_destination, client, dest, spec.output, run=run.prefix, target=target, writes=True
            )

    async def _ask_why_stalled(
        self, wf: WorkflowRef, jobs: Sequence[JobFacts], now: dt.datetime
    ) -> tuple[tuple[str, ...], Stall | None]:
        """Why a child stalled for ``stall_seconds`` has no pod running, asked sparingly: the Jobs
        it asked about this pass, and the cause it found. The planner turns that into ``PodsBlocked``
        and the phase."""
        after = self.settings.stall_seconds
        clock = time.monotonic()
        asked = {k: t for k, t in self._asked.get(wf.uid, {}).items() if clock - t < 10 * after}
        self._asked[wf.uid] = asked
        if asked and clock - max(asked.values()) < after:
            # One round of questions per stall_seconds and workflow. On a busy cluster every Job
            # waits longer than that for its pod (500 at once, wave after wave), and asking about
            # three each pass listed the namespace's Events and Pods a dozen times a second: more
            # apiserver CPU than the run's own Jobs (measured at 1,000 x 500). A refusal is
            # still found at the first round.
            return (), None
        due = stalls.to_ask(jobs, now, after, asked=asked, clock=clock, limit=self.settings.stall_checks_per_pass)
        for job in due:
            asked[job.name] = clock
            try:
                events, pods = await asyncio.gather(
                    self.api.job_events(wf.namespace, job.name), self.api.job_pods(wf.namespace, job.name)
                )
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
                # A diagnosis only: without it the pass still does its work (e.g. RBAC not updated).
                log.warning("%s/%s: cannot ask why Job %s has no pod running: %s", wf.namespace, wf.name, job.name, e)
                return (), None
            stall = stalls.diagnose(job.name, events, pods)
            if stall is not None:
                return (job.name,), stall
        return tuple(j.name for j in due), None

    async def _ask_why_queued(self, wf: WorkflowRef, jobs: Sequence[JobFacts]) -> Admission | None:
        """What Kueue says of the oldest queued child, read at most once per ``stall_seconds``."""
        waiting = [j for j in jobs if j.queued and j.state is JobState.ACTIVE]
        if not waiting:
            self._admission.pop(wf.uid, None)
            return None
        clock = time.monotonic()
        last = self._admission.get(wf.uid)
        if last is not None and clock - last[0] < self.settings.stall_seconds:
            return last[1]
        oldest = min(waiting, key=lambda j: j.created_at.timestamp() if j.created_at else math.inf)
        try:
            said = queueing.admission(await self.api.job_workloads(wf.namespace, oldest.uid))
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            # No Kueue API (another admission controller suspends), or no right to read it: the
            # run still says it is queued, without Kueue's words.
            log.debug("%s/%s: cannot read the Workload of Job %s: %s", wf.namespace, wf.name, oldest.name, e)
            said = None
        self._admission[wf.uid] = (clock, said)
        return said

    async def _logs_kept(self, run: _Run, jobs: Sequence[JobFacts]) -> frozenset[str] | None:
        """The Jobs whose logs are stored: listed from the run's prefix the first time any is owed
        (after a start or a hand-over), then kept up by this replica's own writes."""
        uid = run.wf.uid
        if uid not in self._kept_logs:
            if not logs.owed(run.spec, jobs, None):
                return None
            self._kept_logs[uid] = await self.api.offload(
                runstore.kept_logs, run.client, run.spec.output.bucket, run.prefix
            )
        return frozenset(self._kept_logs[uid])

    async def _keep_logs(self, seen: _Seen, run: _Run, result: Plan) -> set[str]:
        """Stores the logs of the pods of the Jobs the plan names (paraflow's container, the tail
        within ``spec.logs.maxBytes``); returns every Job whose logs are still owed. A Job whose logs
        cannot be stored ``logs.TRIES`` times in a row (no right to read them, a node that never
        comes back) is given up with a Warning Event, so nothing waits on it for ever."""
        wf, limit = run.wf, parse_bytes(run.spec.logs.max_bytes)
        kept = self._kept_logs.setdefault(wf.uid, set())
        failures = self._log_failures.setdefault(wf.uid, {})
        for name in result.keep_logs:
            try:
                for pod in await self.api.job_pods(wf.namespace, name):
                    await self._keep_pod_log(run, name, pod, limit=limit)
            except (ApiException, StorageUnavailable, urllib3.exceptions.HTTPError, OSError) as e:
                failures[name] = failures.get(name, 0) + 1
                if not logs.given_up(failures[name]):
                    log.warning(
                        "%s/%s: cannot keep the logs of Job %s yet (retried): %s", wf.namespace, wf.name, name, e
                    )
                    continue
                self.emit(seen.body, logs.not_kept(str(e), job=name))
            failures.pop(name, None)
            kept.add(name)
        return {name for name in result.logs_owed if name not in kept}

    async def _keep_pod_log(self, run: _Run, job: str, pod: Mapping[str, Any], *, limit: int) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        # paraflow's container by name: a mesh may put its proxy first.
        names = [c["name"] for c in spec.get("containers") or []]
        container = next((n for n in names if n in builders.OWN_CONTAINERS), names[0] if names else "")
        try:
            tail = await self.api.pod_log(run.wf.namespace, meta["name"], container=container, limit=limit)
        except ApiException as e:
            if e.status in (400, 404):
                return  # never started (no log to keep), or gone already
            raise
        state = podlogs.terminated_state(pod, container)
        await self.api.offload(
            runstore.keep_pod_log,
            run.client,
            run.spec.output.bucket,
            contract.pod_log_key(run.prefix, job, meta["name"]),
            data=tail.text(),
            metadata={**state, "total-bytes": str(tail.total), "container": container},
            writes=True,
        )

    def forget(self, uid: str) -> None:
        """The workflow is gone: drop what was kept for it."""
        self.expectations.forget(uid)
        self._asked.pop(uid, None)
        self._admission.pop(uid, None)
        self._kept_logs.pop(uid, None)
        self._log_failures.pop(uid, None)
        self._deleted.pop(uid, None)
        self._evict(uid)

    async def _read_plan(self, run: _Run, status: WorkflowStatus, jobs: Sequence[JobFacts]) -> PlanRead | None:
        if not planner.needs_plan(status, jobs):
            return None
        return await self.api.offload(runstore.read_plan, run.client, run.bucket, run.prefix)

    async def _read_reports(
        self, run: _Run, status: WorkflowStatus, jobs: Sequence[JobFacts]
    ) -> dict[str, ReplicationTally]:
        wanted = planner.needs_reports(run.spec, status, jobs)
        if not wanted:
            return {}
        tallies = await asyncio.gather(
            *(
                self.api.offload(runstore.read_replication_tally, run.client, run.bucket, run.prefix, label=job.name)
                for job in wanted
            )
        )
        return {job.name: tally for job, tally in zip(wanted, tallies, strict=True)}

    async def _read_reduce_record(self, run: _Run, status: WorkflowStatus, jobs: Sequence[JobFacts]) -> dict[int, str]:
        attempt = planner.needs_reduce_record(run.spec, status, jobs)
        if attempt is None:
            return {}
        problem = await self.api.offload(
            runstore.reduce_record_problem, run.client, run.bucket, run.prefix, attempt=attempt
        )
        return {attempt: problem}

    async def _write_manifest(self, run: _Run, result: Plan) -> str:
        return await self.api.offload(
            runstore.write_manifest,
            run.client,
            run.bucket,
            run.prefix,
            writes=True,
            workflow=run.wf.name,
            namespace=run.wf.namespace,
            uid=run.wf.uid,
            succeeded=result.manifest or [],
            failed=sorted(indexsets.expand(result.status.failed_indexes)),
        )

    async def _create_children(self, run: _Run, result: Plan) -> None:
        if not result.creates:
            return
        wf, spec = run.wf, run.spec
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(
            action: Create,
        ) -> None:
            body = builders.child_job(
                wf, spec, action, partitioner_attempt=result.status.redrive.count + 1, settings=self.settings
            )
            role = body["metadata"]["labels"][c.LABEL_ROLE]
            async with gate:
                made = await self.api.create_job(body)
                if made:
                    metrics.JOBS_CREATED.labels(role).inc()
                else:  # deterministic names: a repeated create (a lost response, a hand-over) finds it
                    metrics.JOBS_ALREADY_EXISTED.labels(role).inc()
                    log.info(
                        "%s/%s: Job %s already exists (409): not created again",
                        wf.namespace,
                        wf.name,
                        body["metadata"]["name"],
                    )
            facts = builders.job_facts(body)
            if facts is not None:  # created now, or found already there: either way, expected
                self.expectations.expect(wf.uid, facts, time.monotonic())

        await asyncio.gather(*(create(a) for a in result.creates))
        log.info("%s/%s: created %d Job(s)", wf.namespace, wf.name, len(result.creates))

    async def _delete_succeeded(self, wf: WorkflowRef, jobs: Sequence[JobFacts], names: Sequence[str]) -> None:
        """``succeededJobs: Delete``: removes the Jobs the plan names (their success is in the
        status already written)."""
        sent = self._deleted.setdefault(wf.uid, set())
        if not names:
            return  # every pass of a run that keeps its Jobs: no walk over all of them
        sent.intersection_update(j.name for j in jobs)
        todo = [n for n in names if n not in sent]
        if not todo:
            return
        uids = {j.name: j.uid for j in jobs}
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)
        failures: list[str] = []

        async def delete(name: str) -> None:
            async with gate:
                try:
                    if await self.api.delete_job(wf.namespace, name, uids[name]):
                        metrics.JOBS_DELETED.inc()
                except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
                    # Housekeeping: the Job stays, and a later pass deletes it. The run's status
                    # and Events are written already and must not wait on it.
                    failures.append(f"{name}: {getattr(e, 'status', '') or type(e).__name__}")
                    return
            sent.add(name)

        await asyncio.gather(*(delete(n) for n in todo))
        log.info("%s/%s: deleted %d Job(s)", wf.namespace, wf.name, len(todo) - len(failures))
        if failures:
            log.warning(
                "%s/%s: %d succeeded Job(s) not deleted (retried later), e.g. %s",
                wf.namespace,
                wf.name,
                len(failures),
                failures[0],
            )

    async def _write_status(self, wf: WorkflowRef, before: WorkflowStatus, after: WorkflowStatus) -> None:
        old = before.model_dump(mode="json", exclude_none=True)
        new = after.model_dump(mode="json", exclude_none=True)
        patch = merge_patch(old, new)
        if patch:
            await self.api.patch_status(wf.namespace, wf.name, patch)
