"""What the CLI shows: the status table and the live progress bar."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from paraflow import constants as c


def status_table(obj: dict[str, Any], failures: dict[int, str]) -> Group:
    st = obj.get("status") or {}
    parts = st.get("partitions") or {}
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("workflow", f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
    schedule = (obj["metadata"].get("labels") or {}).get(c.LABEL_SCHEDULE)
    if schedule:
        slot = (obj["metadata"].get("annotations") or {}).get(c.ANNOTATION_SLOT, "?")
        summary.add_row("schedule", f"{schedule}, slot {slot} (paraflow schedule status {schedule})")
    summary.add_row("phase", st.get("phase", "Pending"))
    summary.add_row(
        "partitions",
        f"{parts.get('succeeded', 0)}/{parts.get('total', 0)} succeeded, "
        f"{parts.get('running', 0)} running, {parts.get('pending', 0)} pending, {parts.get('failed', 0)} failed"
        + (f", {parts['queued']} queued (waiting for admission)" if parts.get("queued") else "")
        + (f", {parts['notRun']} not run (a redrive runs them)" if parts.get("notRun") else ""),
    )
    if st.get("attempts"):
        summary.add_row("retried", ", ".join(f"attempt {a}: {idx}" for a, idx in st["attempts"].items()))
    redrives = int((st.get("redrive") or {}).get("count") or 0)
    if redrives:
        max_attempts = int(((obj.get("spec") or {}).get("retry") or {}).get("maxAttempts") or 3)
        summary.add_row(
            "redriven",
            f"{redrives} time(s); redrive r starts what it re-runs at attempt {max_attempts} x r + 1 "
            f"(this round: attempt {max_attempts * redrives + 1})",
        )
    reduced = st.get("reduce")
    if reduced:
        where = f", outputs under {reduced['outputPrefix']}" if reduced.get("outputPrefix") else ""
        summary.add_row("reduce", f"{reduced.get('phase', 'Pending')}, attempt {reduced.get('attempt', 1)}{where}")
    rep = st.get("replication")
    if rep:
        summary.add_row(
            "replication",
            f"{rep.get('objects', 0)} objects ({rep.get('bytes', 0)} bytes) copied, "
            f"{rep.get('skipped', 0)} skipped, {rep.get('failed', 0)} failed, "
            f"{rep.get('pending', 0)} partitions pending",
        )
    if st.get("message"):
        summary.add_row("message", st["message"])
    if st.get("manifest"):
        summary.add_row("manifest", st["manifest"])
    conditions = Table(title="conditions", title_justify="left")
    for col in ("type", "status", "reason", "message"):
        conditions.add_column(col)
    for cond in st.get("conditions", []):
        conditions.add_row(cond["type"], cond["status"], cond["reason"], cond.get("message", ""))
    parts_out: list[Any] = [summary, conditions]
    if failures:
        failed = Table(title="failed partitions", title_justify="left")
        failed.add_column("partition", justify="right")
        failed.add_column("last error")
        for index, error in sorted(failures.items()):
            failed.add_row(str(index), error)
        parts_out.append(failed)
    return Group(*parts_out)


class WatchView:
    """A bar of partitions done (with rate and ETA) and, when replicating, one of replication."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.partitions: TaskID = progress.add_task("partitions", total=None, detail="")
        self.replication: TaskID | None = None

    @staticmethod
    def make(console: Any) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

    def update(self, obj: dict[str, Any]) -> None:
        st = obj.get("status") or {}
        counts = st.get("partitions") or {}
        done = counts.get("succeeded", 0) + counts.get("failed", 0)
        self.progress.update(
            self.partitions,
            total=counts.get("total") or None,
            completed=done,
            description=f"{st.get('phase', 'Pending'):<12} partitions",
            detail="  ".join(f"{k} {counts.get(k, 0)}" for k in ("running", "queued", "failed")),
        )
        rep = st.get("replication")
        if rep is not None:
            if self.replication is None:
                self.replication = self.progress.add_task("replication", total=None, detail="")
            replicated = counts.get("succeeded", 0) - rep.get("pending", 0)
            self.progress.update(
                self.replication,
                total=counts.get("succeeded") or None,
                completed=max(0, replicated),
                description=f"{'':<12} replication",
                detail=f"{rep.get('objects', 0)} objects  {rep.get('bytes', 0) / 1e6:.1f} MB",
            )
