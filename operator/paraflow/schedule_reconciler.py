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
from paraflow.models import WorkflowStatus, spec_error
from paraflow.planning.actions import Event
from paraflow.planning.schedule import Run, ScheduleObserved, SchedulePlan, ScheduleRef, plan
from paraflow.reasons import Reason
from paraflow.schedule_models import HookDelivery, ScheduleSpec, ScheduleStatus, WebhookSpec

log = logging.getLogger(__name__)
Emit = Callable[[Mapping[str, Any], Event], None]
Deliver = Callable[..., Any]
DELIVERIES_KEPT = 10


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

    async def reconcile(self, body: Mapping[str, Any], _: Sequence[object] = ()) -> float | None:
        """One pass; the seconds until the next one is due (the next slot, a deadline)."""
        meta = body["metadata"]
        ref = ScheduleRef(meta["name"], meta["namespace"], meta["uid"])
        before = ScheduleStatus.model_validate(_known(body.get("status")))
        try:
            spec = ScheduleSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            await self._refuse(body, ref, before, why=spec_error(e))
            return None
        runs = [
            _run(item) for item in await self.api.list_workflows(ref.namespace, f"{c.LABEL_SCHEDULE_UID}={ref.uid}")
        ]
        observed = ScheduleObserved(
            ref=ref,
            generation=int(meta.get("generation", 0)),
            created=_parse(meta["creationTimestamp"]),
            now=self.clock(),
            runs=[r for r in runs if r is not None],
        )
        result = plan(spec, before, observed)
        await self._start(result)
        for run in result.deletes:
            await self.api.delete_workflow(ref.namespace, run.name, run.uid)
        await self._write_status(ref, before, result.status)
        for event in result.events:
            self.emit(body, event)
        if result.ended:
            reported = before if result.status == before else result.status
            await self._report(body, ref, spec, ended=result.ended, status=reported)
        return result.requeue_after

    async def _start(self, result: SchedulePlan) -> None:
        for run in result.creates:
            if await self.api.create_workflow(run):
                meta = run["metadata"]
                result.events.append(
                    Event(
                        "Normal",
                        Reason.RUN_STARTED,
                        f"started {meta['name']} for slot {meta['annotations'][c.ANNOTATION_SLOT]}",
                    )
                )

    async def _report(
        self,
        body: Mapping[str, Any],
        ref: ScheduleRef,
        spec: ScheduleSpec,
        *,
        ended: list[Run],
        status: ScheduleStatus,
    ) -> None:
        """Tells of each ended run once: an Event and a metric, and the webhook if there is one;
        the run is then marked reported (and may go with the history limits)."""
        items = {i["metadata"]["name"]: i for i in await self.api.list_workflows(ref.namespace, _selector(ref))}
        secret = await self._signing_secret(ref, spec.hook.webhook) if spec.hook is not None else None
        summaries = [_summary(ref, items[r.name]) for r in ended if r.name in items]
        outcomes = await asyncio.gather(*(self._tell(body, spec, s, secret=secret) for s in summaries))
        deliveries = [d for d in outcomes if d is not None]
        if deliveries:
            after = status.model_copy(deep=True)
            after.deliveries = (after.deliveries + deliveries)[-DELIVERIES_KEPT:]
            await self._write_status(ref, status, after)

    async def _tell(
        self, body: Mapping[str, Any], spec: ScheduleSpec, summary: dict[str, Any], *, secret: bytes | None
    ) -> HookDelivery | None:
        phase, name = summary["phase"], summary["workflow"]
        reason = Reason.RUN_SUCCEEDED if phase == "Succeeded" else Reason.RUN_FAILED
        counts = summary["partitions"]
        self.emit(
            body,
            Event(
                "Normal" if phase == "Succeeded" else "Warning",
                reason,
                f"run {name} (slot {summary['scheduledTime']}) {phase} in {summary['durationSeconds']}s: "
                f"{counts.get('succeeded', 0)} of {counts.get('total', 0)} partitions succeeded, "
                f"{counts.get('failed', 0)} failed; manifest {summary['manifest'] or '(none)'}",
            ),
        )
        metrics.SCHEDULED_RUNS.labels(summary["namespace"], summary["schedule"], phase).inc()
        delivery = None
        mark = "NoHook"
        if spec.hook is not None:
            delivery = await self.deliver(spec.hook.webhook, summary, secret=secret, clock=self.clock)
            mark = delivery.result
            metrics.HOOK_DELIVERIES.labels(delivery.result).inc()
            if delivery.result == "Failed":
                self.emit(
                    body,
                    Event(
                        "Warning",
                        Reason.HOOK_FAILED,
                        f"webhook for run {name} failed after {delivery.attempts} attempt(s): {delivery.error}; "
                        "the run's outcome is unchanged",
                    ),
                )
        await self.api.annotate_workflow(summary["namespace"], name, {c.ANNOTATION_REPORTED: mark})
        return delivery

    async def _signing_secret(self, ref: ScheduleRef, hook: WebhookSpec) -> bytes | None:
        if hook.signing_secret is None:
            return None
        try:
            values = await self.api.read_secret(ref.namespace, hook.signing_secret.name, (hook.signing_secret.key,))
        except SecretMissing as e:
            log.warning("%s/%s: webhook sent unsigned: %s", ref.namespace, ref.name, e)
            return None
        return values[hook.signing_secret.key].encode()

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
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
