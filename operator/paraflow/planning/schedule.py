"""``plan(spec, status, observed) -> SchedulePlan``: one pass of a schedule, pure.

Slots are decided in order, from the last one decided (``status.lastScheduleTime``, or the
schedule's creation) up to now. A slot's run is named from the slot itself, so a slot that has a
run is never started again, whoever started it (another replica, a restart, ``paraflow
backfill``). A slot past ``startingDeadlineSeconds`` is missed, said in an Event, never dropped
in silence. Then the policy: Allow starts every due slot; Forbid starts the next one once no
run is active, and the others wait; Replace starts only the newest due slot, deletes the active
runs, and reports the older due slots as skipped.

A run that ended is reported once (an Event, a metric, the webhook if any) and only then may
the history limits delete it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from paraflow import constants as c
from paraflow import cron, template
from paraflow.models import WorkflowSpec, spec_error
from paraflow.planning.actions import Event
from paraflow.reasons import Reason
from paraflow.schedule_models import ScheduleSpec, ScheduleStatus

# Slots looked at in one pass (CronJob's limit too): after longer downtime, the older ones are
# reported as missed.
MAX_SLOTS = 100
# status.active names the oldest of them; activeRuns counts them all.
MAX_ACTIVE_LISTED = 100
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def run_name(schedule: str, slot: dt.datetime) -> str:
    """CronJob's naming: the slot in minutes since the epoch, so a slot maps to one name."""
    return f"{schedule}-{int(slot.timestamp()) // 60}"


@dataclass(frozen=True)
class Run:
    """One of the schedule's workflows, as the reconciler found it."""

    name: str
    uid: str
    slot: dt.datetime
    phase: str
    finished_at: dt.datetime | None = None
    reported: bool = False  # its end was told (Event, metric, webhook): paraflow.dev/reported

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True)
class ScheduleRef:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class ScheduleObserved:
    ref: ScheduleRef
    generation: int
    created: dt.datetime
    now: dt.datetime
    runs: Sequence[Run]


@dataclass
class SchedulePlan:
    status: ScheduleStatus
    creates: list[dict[str, Any]] = field(default_factory=list)  # the runs to start, oldest slot first
    deletes: list[Run] = field(default_factory=list)
    ended: list[Run] = field(default_factory=list)  # to report: Event, metric, webhook
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def plan(spec: ScheduleSpec, status: ScheduleStatus, obs: ScheduleObserved) -> SchedulePlan:
    out = SchedulePlan(status=status.model_copy(deep=True))
    out.status.observed_generation = obs.generation
    out.status.message = ""
    runs = {r.name: r for r in obs.runs}
    if not spec.suspend:
        _start_due(out, spec, obs, runs=runs, was=status.message)
    active = [r for r in obs.runs if not r.ended and r not in out.deletes]
    started = [body["metadata"]["name"] for body in out.creates]
    names = [r.name for r in sorted(active, key=lambda r: r.slot)] + started
    out.status.active = names[:MAX_ACTIVE_LISTED]
    out.status.active_runs = len(names)
    out.ended = [r for r in obs.runs if r.ended and not r.reported]
    done = [r.finished_at for r in obs.runs if r.phase == "Succeeded" and r.finished_at is not None]
    if done and (out.status.last_successful_time is None or max(done) > out.status.last_successful_time):
        out.status.last_successful_time = max(done)
    out.deletes += _beyond_history(spec, obs.runs)
    _next(out, spec, obs)
    return out


def _start_due(out: SchedulePlan, spec: ScheduleSpec, obs: ScheduleObserved, *, runs: dict[str, Run], was: str) -> None:
    st = out.status
    since = st.last_schedule_time or obs.created
    due, truncated = cron.slots_between(spec.schedule, spec.time_zone, since, until=obs.now, most=MAX_SLOTS)
    decided: dt.datetime | None = None
    if truncated:
        decided = due[0] - dt.timedelta(seconds=1)  # every older slot is missed, and said so once
        out.events.append(
            Event(
                "Warning",
                Reason.SLOTS_MISSED,
                f"more than {MAX_SLOTS} slots came since {_at(since)}: the ones before {_at(due[0])} are missed",
            )
        )

    def has_run(slot: dt.datetime) -> bool:
        return run_name(obs.ref.name, slot) in runs

    deadline = spec.starting_deadline_seconds
    late = [s for s in due if not has_run(s) and deadline is not None and _age(obs, s) > deadline]
    if late:
        out.events.append(
            Event(
                "Warning",
                Reason.SLOTS_MISSED,
                f"{len(late)} slot(s) not started within startingDeadlineSeconds ({deadline}s): {_slots_text(late)}",
            )
        )
    open_slots = [s for s in due if not has_run(s) and s not in late]
    active = [r for r in runs.values() if not r.ended]
    if spec.concurrency_policy == "Replace":
        started, skipped = _replace(out, spec, obs, open_slots=open_slots, runs=runs, was=was)
    else:
        started, skipped = _in_order(out, spec, obs, open_slots=open_slots, active=active, was=was), []
    # Decided: every slot up to it has a run, was missed or skipped. A slot that waits (Forbid,
    # or a template to fix) stops it, whatever comes after: the slot still runs later.
    for slot in due:
        if not (has_run(slot) or slot in late or slot in started or slot in skipped):
            break
        decided = slot
    if decided is not None and (st.last_schedule_time is None or decided > st.last_schedule_time):
        st.last_schedule_time = decided


def _replace(
    out: SchedulePlan,
    spec: ScheduleSpec,
    obs: ScheduleObserved,
    *,
    open_slots: list[dt.datetime],
    runs: dict[str, Run],
    was: str,
) -> tuple[list[dt.datetime], list[dt.datetime]]:
    """Only the newest due slot starts, in place of the active runs; the older ones are skipped.
    A slot older than a run that exists never starts: that run is newer, whatever the status
    read says."""
    newest_run = max((r.slot for r in runs.values()), default=None)
    newer = [s for s in open_slots if newest_run is None or s > newest_run]
    started: list[dt.datetime] = []
    if newer:
        if not _create(out, spec, obs, slot=newer[-1], was=was):
            return [], []
        started = [newer[-1]]
        for run in (r for r in runs.values() if not r.ended):
            out.deletes.append(run)
            out.events.append(Event("Normal", Reason.RUN_REPLACED, f"run {run.name} replaced by slot {_at(newer[-1])}"))
    skipped = [s for s in open_slots if s not in started]
    if skipped:
        out.events.append(
            Event("Normal", Reason.SLOTS_MISSED, f"Replace: a newer slot has a run, so {_slots_text(skipped)} skipped")
        )
    return started, skipped


def _in_order(
    out: SchedulePlan,
    spec: ScheduleSpec,
    obs: ScheduleObserved,
    *,
    open_slots: list[dt.datetime],
    active: list[Run],
    was: str,
) -> list[dt.datetime]:
    """Allow starts every due slot; Forbid the oldest once nothing is active, the others wait."""
    started: list[dt.datetime] = []
    deadline = spec.starting_deadline_seconds
    for slot in open_slots:
        if spec.concurrency_policy == "Forbid" and (active or started):
            busy = active[0].name if active else run_name(obs.ref.name, started[0])
            out.status.message = f"slot {_at(slot)} waits for run {busy} to finish (concurrencyPolicy: Forbid)"
            if deadline is not None:
                out.requeue_after = _sooner(out.requeue_after, max(1.0, deadline - _age(obs, slot) + 1))
            break
        if not _create(out, spec, obs, slot=slot, was=was):
            break
        started.append(slot)
    return started


def _create(out: SchedulePlan, spec: ScheduleSpec, obs: ScheduleObserved, *, slot: dt.datetime, was: str) -> bool:
    """Adds the slot's run; False, with the reason in the status (said once), if the template
    does not make a valid ParallelWorkflow for it: the slot stays undecided, so fixing the
    template lets it run (within its deadline)."""
    try:
        out.creates.append(run_body(obs.ref, spec, slot))
    except ValueError as e:
        out.status.message = str(e)
        if out.status.message != was:
            out.events.append(Event("Warning", Reason.INVALID_RUN, str(e)))
        return False
    return True


def _beyond_history(spec: ScheduleSpec, runs: Sequence[Run]) -> list[Run]:
    """Reported runs past the history limits, oldest first."""
    gone: list[Run] = []
    for phase, keep in (
        ("Succeeded", spec.successful_runs_history_limit),
        ("Failed", spec.failed_runs_history_limit),
    ):
        ended = sorted((r for r in runs if r.phase == phase and r.reported), key=lambda r: r.slot, reverse=True)
        gone += ended[keep:][::-1]
    return gone


def _next(out: SchedulePlan, spec: ScheduleSpec, obs: ScheduleObserved) -> None:
    upcoming = None if spec.suspend else next(cron.slots(spec.schedule, spec.time_zone, obs.now), None)
    out.status.next_schedule_time = upcoming
    if upcoming is not None:
        out.requeue_after = _sooner(out.requeue_after, max(1.0, (upcoming - obs.now).total_seconds()))


def _age(obs: ScheduleObserved, slot: dt.datetime) -> float:
    return (obs.now - slot).total_seconds()


def _sooner(current: float | None, seconds: float) -> float:
    return seconds if current is None else min(current, seconds)


def _at(slot: dt.datetime) -> str:
    return slot.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _slots_text(slots: list[dt.datetime]) -> str:
    return _at(slots[0]) if len(slots) == 1 else f"{_at(slots[0])} to {_at(slots[-1])}"


def run_body(schedule: ScheduleRef, spec: ScheduleSpec, slot: dt.datetime) -> dict[str, Any]:
    """The ParallelWorkflow of one slot, its parameters filled in; raises ValueError naming the
    field when the filled-in spec is not a valid ParallelWorkflow."""
    tpl = spec.workflow_template
    raw = tpl.spec.model_dump(by_alias=True, mode="json", exclude_defaults=True)
    rendered = template.render(raw, slot, zoneinfo.ZoneInfo(spec.time_zone))
    try:
        WorkflowSpec.model_validate(rendered)
    except ValidationError as e:
        raise ValueError(f"the run of slot {_at(slot)} is not a valid ParallelWorkflow: {spec_error(e)}") from e
    return {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": c.KIND,
        "metadata": {
            "name": run_name(schedule.name, slot),
            "namespace": schedule.namespace,
            "labels": {**tpl.labels, c.LABEL_SCHEDULE: schedule.name, c.LABEL_SCHEDULE_UID: schedule.uid},
            "annotations": {**tpl.annotations, c.ANNOTATION_SLOT: _at(slot)},
            # Deleting the schedule deletes its runs (their data stays, as for any workflow).
            "ownerReferences": [
                {
                    "apiVersion": f"{c.GROUP}/{c.VERSION}",
                    "kind": c.SCHEDULE_KIND,
                    "name": schedule.name,
                    "uid": schedule.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": rendered,
    }
