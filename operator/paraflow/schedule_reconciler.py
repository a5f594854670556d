"""One pass of a schedule: observe its runs, plan (pure, ``planning/schedule.py``), apply.

Applied in the order that keeps a crash harmless: runs are created first (named by their slot,
so a repeated create finds the run there), then the status that records the slot as decided;
runs that ended are reported (Event, metric, webhook) and marked reported, and only reported
runs are ever deleted by the history limits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from paraflow import constants as c
from paraflow import hooks, metrics
from paraflow.k8s.api import KubeApi, SecretMissing
from paraflow.k8s.merge import merge_patch
from paraflow.models import WorkflowStatus, parse_time, spec_error
from paraflow.planning.actions import Event
from paraflow.planning.schedule import Run, ScheduleObserved, SchedulePlan, ScheduleRef, plan
from paraflow.reasons import Reason
from paraflow.schedule_models import HookDelivery, ScheduleSpec, ScheduleStatus

log = logging.getLogger(__name__)
Emit = Callable[[Mapping[str, Any], Event], None]
Deliver = Callable[..., Any]
DELIVERIES_KEPT = 10
# A run the apiserver refused (quota, policy) is tried again this soon.
CREATE_RETRY_SECONDS = 30.0


class ScheduleReconciler:
    def __init__(
        self,
        api: KubeApi,
        emit: Emit,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        deliver: Deliver = hooks.deliver,
    ) -> None:
        self.api = api
        self.emit = emit
        self.clock = clock
        self.deliver = deliver
        # Run uid -> the report of its end in flight (a webhook may take a minute of retries:
        # it runs beside the schedule's passes, which go on starting slots meanwhile).
        self._telling: dict[str, asyncio.Task[None]] = {}
        # Schedule uid -> the lock of its status.deliveries (several reports may end at once).
        self._deliveries: dict[str, asyncio.Lock] = {}

    async def reconcile(self, body: Mapping[str, Any], _: Sequence[object] = ()) -> float | None:
        """One pass; the seconds until the next one is due (the next slot, a deadline)."""
        meta = body["metadata"]
        # A quorum read: the watch's copy may lag this replica's own last status write, and a pass
        # on an old lastScheduleTime would decide slots again (Replace would delete a new run).
        fresh = await self.api.read_workflow(meta["namespace"], meta["name"], plural=c.SCHEDULE_PLURAL)
        if fresh is None or fresh["metadata"]["uid"] != meta["uid"]:
            return None  # deleted; its DELETED event ends the loop
        body, meta = fresh, fresh["metadata"]
        ref = ScheduleRef(meta["name"], meta["namespace"], meta["uid"])
        before = ScheduleStatus.model_validate(_known(body.get("status")))
        try:
            spec = ScheduleSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            await self._refuse(body, ref, before, why=spec_error(e))
            return None
        items = await self.api.list_workflows(ref.namespace, _selector(ref))
        runs = [r for r in (_run(item) for item in items) if r is not None]
        observed = ScheduleObserved(
            ref=ref,
            generation=int(meta.get("generation", 0)),
            created=_parse(meta["creationTimestamp"]),
            now=self.clock(),
            runs=runs,
        )
        result = plan(spec, before, observed)
        await self._start(before, result)
        for run in result.deletes:
            await self.api.delete_workflow(ref.namespace, run.name, run.uid)
        await self._write_status(ref, before, result.status)
        for event in result.events:
            self.emit(body, event)
        by_name = {item["metadata"]["name"]: item for item in items}
        for run in result.ended:
            if run.uid not in self._telling:
                task = asyncio.create_task(self._tell(body, ref, spec, item=by_name[run.name]))
                self._telling[run.uid] = task
                task.add_done_callback(self._told(run.uid))
        return result.requeue_after

    def _told(self, uid: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_: asyncio.Task[None]) -> None:
            self._telling.pop(uid, None)

        return forget

    async def settle(self) -> None:
        """Waits for the reports in flight (a stopping operator lets its webhooks finish)."""
        await asyncio.gather(*self._telling.values(), return_exceptions=True)

    async def _start(self, before: ScheduleStatus, result: SchedulePlan) -> None:
        for run in result.creates:
            meta = run["metadata"]
            try:
                created = await self.api.create_workflow(run)
            except ApiException as e:
                if e.status is None or e.status >= 500:
                    raise  # the apiserver's trouble: the loop retries with backoff
                # A quota, a policy, an admission webhook refused it: said once in the status and
                # an Event, and the slot stays undecided (runs made before it are found by
                # name), so the next pass tries it again, within its deadline.
                result.status.last_schedule_time = before.last_schedule_time
                result.status.message = f"run {meta['name']} not created: {e.status} {e.reason}; retried"
                if result.status.message != before.message:
                    result.events.append(Event("Warning", Reason.RUN_NOT_CREATED, result.status.message))
                result.requeue_after = min(result.requeue_after or CREATE_RETRY_SECONDS, CREATE_RETRY_SECONDS)
                return
            if created:
                result.events.append(
                    Event(
                        "Normal",
                        Reason.RUN_STARTED,
                        f"started {meta['name']} for slot {meta['annotations'][c.ANNOTATION_SLOT]}",
                    )
                )

    async def _tell(
        self, body: Mapping[str, Any], ref: ScheduleRef, spec: ScheduleSpec, *, item: Mapping[str, Any]
    ) -> None:
        """Tells of a run's end once: the webhook (if any), then its Event and metric, then marks
        the run reported (only then may the history limits delete it)."""
        summary = _summary(ref, item)
        phase, name = summary["phase"], summary["workflow"]
        try:
            delivery = await self._deliver(ref, spec, summary)
            counts = summary["partitions"]
            self.emit(
                body,
                Event(
                    "Normal" if phase == "Succeeded" else "Warning",
                    Reason.RUN_SUCCEEDED if phase == "Succeeded" else Reason.RUN_FAILED,
                    f"run {name} (slot {summary['scheduledTime']}) {phase} in {summary['durationSeconds']}s: "
                    f"{counts.get('succeeded', 0)} of {counts.get('total', 0)} partitions succeeded, "
                    f"{counts.get('failed', 0)} failed; manifest {summary['manifest'] or '(none)'}",
                ),
            )
            metrics.SCHEDULED_RUNS.labels(summary["namespace"], summary["schedule"], phase).inc()
            if delivery is not None:
                await self._record(ref, delivery)
            await self.api.annotate_workflow(
                summary["namespace"], name, {c.ANNOTATION_REPORTED: delivery.result if delivery else "NoHook"}
            )
        except Exception:  # the next pass reports it again; nothing else may stop because of it
            log.exception(
                "%s/%s: reporting the end of run %s failed; the next pass tries again", ref.namespace, ref.name, name
            )

    async def _deliver(self, ref: ScheduleRef, spec: ScheduleSpec, summary: dict[str, Any]) -> HookDelivery | None:
        if spec.hook is None:
            return None
        hook = spec.hook.webhook
        secret = None
        if hook.signing_secret is not None:
            try:
                values = await self.api.read_secret(ref.namespace, hook.signing_secret.name, (hook.signing_secret.key,))
            except SecretMissing as e:
                # Never sent unsigned to a receiver that checks signatures.
                refused = hooks.record(summary, "Failed", 0, code=None, error=f"not sent: {e}", clock=self.clock)
                metrics.HOOK_DELIVERIES.labels(refused.result).inc()
                return refused
            secret = values[hook.signing_secret.key].encode()
        delivery: HookDelivery = await self.deliver(hook, summary, secret=secret, clock=self.clock)
        metrics.HOOK_DELIVERIES.labels(delivery.result).inc()
        return delivery

    async def _record(self, ref: ScheduleRef, delivery: HookDelivery) -> None:
        """Adds the delivery to the schedule's status (and a Warning Event if it failed)."""
        async with self._deliveries.setdefault(ref.uid, asyncio.Lock()):
            fresh = await self.api.read_workflow(ref.namespace, ref.name, plural=c.SCHEDULE_PLURAL)
            if fresh is None:
                return
            before = ScheduleStatus.model_validate(_known(fresh.get("status")))
            after = before.model_copy(deep=True)
            after.deliveries = [*after.deliveries, delivery][-DELIVERIES_KEPT:]
            await self._write_status(ref, before, after)
            if delivery.result == "Failed":
                self.emit(
                    fresh,
                    Event(
                        "Warning",
                        Reason.HOOK_FAILED,
                        f"webhook for run {delivery.run} failed after {delivery.attempts} attempt(s): "
                        f"{delivery.error}; the run's outcome is unchanged",
                    ),
                )

    async def _refuse(self, body: Mapping[str, Any], ref: ScheduleRef, before: ScheduleStatus, *, why: str) -> None:
        after = before.model_copy(update={"message": why})
        if after != before:
            self.emit(body, Event("Warning", Reason.INVALID_SCHEDULE, why))
            await self._write_status(ref, before, after)

    async def _write_status(self, ref: ScheduleRef, before: ScheduleStatus, after: ScheduleStatus) -> None:
        patch = merge_patch(
            before.model_dump(mode="json", by_alias=True, exclude_none=True),
            after.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        if patch:
            try:
                await self.api.patch_status(ref.namespace, ref.name, patch, plural=c.SCHEDULE_PLURAL)
            except ApiException as e:
                if e.status != 404:
                    raise


def _selector(ref: ScheduleRef) -> str:
    return f"{c.LABEL_SCHEDULE_UID}={ref.uid}"


def _known(status: Any) -> dict[str, Any]:
    known = {f.alias or n for n, f in ScheduleStatus.model_fields.items()}
    return {k: v for k, v in dict(status or {}).items() if k in known}


def _run(item: Mapping[str, Any]) -> Run | None:
    meta = item["metadata"]
    slot = (meta.get("annotations") or {}).get(c.ANNOTATION_SLOT)
    if slot is None:
        return None  # not made by a schedule (a label copied by hand): not ours to count
    status = WorkflowStatus.from_body(item.get("status"))
    return Run(
        name=meta["name"],
        uid=meta["uid"],
        slot=_parse(slot),
        phase=status.phase,
        finished_at=status.completion_time,
        reported=c.ANNOTATION_REPORTED in (meta.get("annotations") or {}),
    )


def _summary(ref: ScheduleRef, item: Mapping[str, Any]) -> dict[str, Any]:
    meta = item["metadata"]
    status = WorkflowStatus.from_body(item.get("status"))
    took = (
        (status.completion_time - status.start_time).total_seconds()
        if status.completion_time and status.start_time
        else None
    )
    return {
        "workflow": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta["uid"],
        "schedule": ref.name,
        "scheduledTime": (meta.get("annotations") or {}).get(c.ANNOTATION_SLOT, ""),
        "phase": status.phase,
        "message": status.message,
        "partitions": status.partitions.model_dump(mode="json", by_alias=True),
        "manifest": status.manifest,
        "startTime": status.model_dump(mode="json", by_alias=True).get("startTime"),
        "completionTime": status.model_dump(mode="json", by_alias=True).get("completionTime"),
        "durationSeconds": took,
    }


def _parse(text: str) -> dt.datetime:
    """A timestamp that must be there (a creationTimestamp, a slot the operator wrote)."""
    when = parse_time(text)
    if when is None:
        raise ValueError("no timestamp")
    return when
