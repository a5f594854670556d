"""``paraflow schedule ...`` and ``paraflow backfill``: a ParallelWorkflowSchedule's actions, one
command each. A run made here is the run the operator would make for that slot (the same
``run_body``, the same name), so a slot never runs twice, whoever starts it."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from paraflow import constants as c
from paraflow.cli import kube

if TYPE_CHECKING:
    from paraflow.planning.schedule import ScheduleRef
    from paraflow.schedule_models import ScheduleSpec

app = typer.Typer(no_args_is_help=True, help="ParallelWorkflowSchedules: list, status, trigger, suspend, resume")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the schedule")]
TERMINAL = ("Succeeded", "Failed")
MAX_BACKFILL_SLOTS = 1000


def _load(name: str, namespace: str) -> tuple[kube.Doc, ScheduleRef, ScheduleSpec]:
    from pydantic import ValidationError

    from paraflow.models import spec_error
    from paraflow.planning.schedule import ScheduleRef
    from paraflow.schedule_models import ScheduleSpec

    kube.load()
    obj = kube.get_schedule(name, namespace)
    meta = obj["metadata"]
    try:
        spec = ScheduleSpec.model_validate(obj.get("spec") or {})
    except ValidationError as e:
        console.print(f"[red]{namespace}/{name} is not a valid schedule[/]: {spec_error(e)}", highlight=False)
        raise typer.Exit(2) from e
    return obj, ScheduleRef(meta["name"], meta["namespace"], meta["uid"]), spec


def _runs(ref: ScheduleRef) -> list[kube.Doc]:
    runs = kube.list_workflows(ref.namespace, f"{c.LABEL_SCHEDULE_UID}={ref.uid}")
    return sorted(runs, key=lambda r: (r["metadata"].get("annotations") or {}).get(c.ANNOTATION_SLOT, ""))


def _phase(run: kube.Doc) -> str:
    return str((run.get("status") or {}).get("phase", "Pending"))


@app.command("list")
def list_(namespace: Namespace = "default") -> None:
    """The schedules of a namespace, with their last and next slots."""
    kube.load()
    table = Table("NAME", "SCHEDULE", "TIME ZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "NEXT", box=None)
    for obj in kube.list_schedules(namespace):
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        table.add_row(
            obj["metadata"]["name"],
            spec.get("schedule", ""),
            spec.get("timeZone", "Etc/UTC"),
            str(spec.get("suspend", False)).lower(),
            str(status.get("activeRuns", 0)),
            status.get("lastScheduleTime", "-"),
            status.get("nextScheduleTime", "-"),
        )
    out.print(table)


@app.command()
def status(name: str, namespace: Namespace = "default") -> None:
    """A schedule's slots, its runs (newest last) and its latest webhook deliveries."""
    obj, ref, spec = _load(name, namespace)
    st = obj.get("status") or {}
    out.print(
        f"{namespace}/{name}: {spec.schedule} ({spec.time_zone}), concurrencyPolicy {spec.concurrency_policy}"
        + (", [yellow]suspended[/]" if spec.suspend else ""),
        highlight=False,
    )
    out.print(
        f"last slot {st.get('lastScheduleTime', '-')}, last success {st.get('lastSuccessfulTime', '-')}, "
        f"next {st.get('nextScheduleTime', '-')}",
        highlight=False,
    )
    if st.get("message"):
        out.print(f"[yellow]{st['message']}[/]", highlight=False)
    runs = Table("RUN", "SLOT", "PHASE", "SUCCEEDED", "FAILED", "TOTAL", box=None)
    for run in _runs(ref):
        counts = (run.get("status") or {}).get("partitions") or {}
        runs.add_row(
            run["metadata"]["name"],
            (run["metadata"].get("annotations") or {}).get(c.ANNOTATION_SLOT, ""),
            _phase(run),
            str(counts.get("succeeded", 0)),
            str(counts.get("failed", 0)),
            str(counts.get("total", 0)),
        )
    out.print(runs)
    for d in st.get("deliveries", []):
        code = f" HTTP {d['code']}" if d.get("code") else ""
        out.print(
            f"webhook {d['run']} ({d['phase']}): {d['result']} after {d['attempts']} attempt(s){code} "
            f"{d.get('error', '')}",
            highlight=False,
        )


@app.command()
def trigger(name: str, namespace: Namespace = "default") -> None:
    """Starts the run of the current minute now, whatever the schedule and its policy say."""
    _, ref, spec = _load(name, namespace)
    slot = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    body = _body(ref, spec, slot)
    if kube.create_run(namespace, body):
        console.print(f"started {body['metadata']['name']} for slot {slot:%Y-%m-%dT%H:%M:%SZ}", highlight=False)
    else:
        console.print(f"the run of this minute exists already: {body['metadata']['name']}", highlight=False)


@app.command()
def suspend(name: str, namespace: Namespace = "default") -> None:
    """No new run starts (active ones finish); slots that come meanwhile wait, as with CronJob."""
    _set_suspend(name, namespace, suspended=True)


@app.command()
def resume(name: str, namespace: Namespace = "default") -> None:
    """Undo suspend: slots within startingDeadlineSeconds that came meanwhile run."""
    _set_suspend(name, namespace, suspended=False)


def _set_suspend(name: str, namespace: str, *, suspended: bool) -> None:
    kube.load()
    kube.patch_schedule(name, namespace, {"spec": {"suspend": suspended}})
    console.print(f"{namespace}/{name} {'suspended' if suspended else 'resumed'}")


def _body(ref: ScheduleRef, spec: ScheduleSpec, slot: dt.datetime) -> kube.Doc:
    from paraflow.planning.schedule import run_body

    try:
        body: kube.Doc = run_body(ref, spec, slot)
    except ValueError as e:
        console.print(f"[red]{e}[/]", highlight=False)
        raise typer.Exit(2) from e
    return body


def _when(text: str, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise typer.BadParameter(f"{text!r} is not a date or time (e.g. 2026-12-01 or 2026-12-01T06:00)") from e
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def backfill(
    name: str,
    *,
    start: Annotated[str, typer.Option("--from", help="First slot time or date (in the schedule's time zone)")],
    end: Annotated[str, typer.Option("--to", help="Last slot time or date, included; at most now")],
    namespace: Namespace = "default",
    max_concurrent: Annotated[
        int, typer.Option(min=1, max=100, help="Runs of the schedule active at once (Forbid and Replace: 1)")
    ] = 1,
    timeout: Annotated[float, typer.Option(min=0, help="Give up after this many seconds (0: wait until done)")] = 0,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between looks at the runs")] = 2.0,
) -> None:
    """Runs the schedule's past slots from --from to --to, oldest first, never more at once than
    the policy and --max-concurrent allow, and waits until they end. Idempotent: a slot whose run
    exists (from the schedule, or an earlier backfill) is not started again."""
    from rich.progress import Progress

    from paraflow import cron
    from paraflow.planning.schedule import run_name

    _, ref, spec = _load(name, namespace)
    zone = zoneinfo.ZoneInfo(spec.time_zone)
    first, last = _when(start, zone), _when(end, zone)
    if last.hour == last.minute == 0 and "T" not in end and " " not in end:
        last += dt.timedelta(days=1) - dt.timedelta(seconds=1)  # a date: all of that day
    last = min(last, dt.datetime.now(dt.UTC))  # a slot to come is the schedule's to start
    slots, more = cron.slots_between(
        spec.schedule, spec.time_zone, first - dt.timedelta(seconds=1), until=last, most=MAX_BACKFILL_SLOTS
    )
    if more:
        console.print(f"[red]more than {MAX_BACKFILL_SLOTS} slots in that range: backfill a shorter one[/]")
        raise typer.Exit(2)
    limit = max_concurrent if spec.concurrency_policy == "Allow" else 1
    wanted = {run_name(ref.name, s) for s in slots}
    pending = list(slots)
    outcome: dict[str, str] = {}  # a slot's run -> its phase when last seen, or "Gone"
    created = existed = 0
    deadline = time.monotonic() + timeout if timeout else None
    with Progress(console=console, transient=False) as progress:
        bar = progress.add_task(f"backfill {name}", total=len(slots))
        while True:
            runs = {r["metadata"]["name"]: _phase(r) for r in _runs(ref)}
            for run in outcome.keys() - runs.keys():
                if outcome[run] not in TERMINAL:
                    outcome[run] = "Gone"  # deleted (by hand, Replace, the history limits) before we saw it end
            outcome.update({n: p for n, p in runs.items() if n in wanted})
            active = [n for n, p in runs.items() if p not in TERMINAL]
            while pending and len(active) < limit:
                body = _body(ref, spec, pending.pop(0))
                run = body["metadata"]["name"]
                if kube.create_run(namespace, body):
                    created += 1
                    active.append(run)
                else:
                    existed += 1
                outcome.setdefault(run, "Pending")
            ended = [n for n in wanted if outcome.get(n) in (*TERMINAL, "Gone")]
            progress.update(bar, completed=len(ended))
            if not pending and len(ended) == len(wanted):
                break
            if deadline is not None and time.monotonic() > deadline:
                waiting = sorted(wanted - set(ended))
                console.print(
                    f"[red]gave up after {timeout:.0f}s; still running or not started: {', '.join(waiting)}[/]"
                )
                raise typer.Exit(3)
            time.sleep(poll)
    counts = {p: sum(1 for n in wanted if outcome.get(n) == p) for p in ("Succeeded", "Failed", "Gone")}
    failed = sorted(n for n in wanted if outcome.get(n) == "Failed")
    console.print(
        f"{len(slots)} slot(s) from {first.astimezone(zone):%Y-%m-%d %H:%M} to {last.astimezone(zone):%Y-%m-%d %H:%M} "
        f"({spec.time_zone}): "
        f"{created} started, {existed} already had a run; {counts['Succeeded']} succeeded, {counts['Failed']} failed"
        + (f": {', '.join(failed)}" if failed else "")
        + (f"; {counts['Gone']} deleted before they were seen to end" if counts["Gone"] else ""),
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)
