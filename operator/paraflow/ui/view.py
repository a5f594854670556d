"""What the page shows of one workflow, as JSON: built from the workflow object, the samples the
server kept of it, and why its failed partitions failed. Nothing secret is in a workflow, and
nothing else is sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paraflow import constants as c
from paraflow.models import TERMINAL, parse_time
from paraflow.ui.grid import CODE, grid
from paraflow.ui.progress import Estimate, Sample, estimate

Doc = dict[str, Any]


def sample(wf: Doc, *, now: dt.datetime) -> Sample:
    status = wf.get("status") or {}
    parts = status.get("partitions") or {}
    replicated = int((status.get("replication") or {}).get("partitions") or 0)
    done = int(parts.get("succeeded") or 0) + int(parts.get("failed") or 0)
    return Sample(now, done, replicated, int((status.get("redrive") or {}).get("count") or 0))


def seeded(wf: Doc, samples: list[Sample]) -> list[Sample]:
    """The samples, starting at the run's start with nothing done (the view may open late)."""
    started = parse_time((wf.get("status") or {}).get("startTime"))
    if started is None or (samples and samples[0].at <= started):
        return samples
    return [Sample(started, 0, 0), *samples]


def summary(wf: Doc) -> Doc:
    """One row of the workflow list."""
    status = wf.get("status") or {}
    labels = wf["metadata"].get("labels") or {}
    return {
        "name": wf["metadata"]["name"],
        "namespace": wf["metadata"]["namespace"],
        "phase": status.get("phase", "Pending"),
        "partitions": status.get("partitions") or {},
        "schedule": labels.get(c.LABEL_SCHEDULE, ""),
        "slot": (wf["metadata"].get("annotations") or {}).get(c.ANNOTATION_SLOT, ""),
        "created": wf["metadata"].get("creationTimestamp", ""),
    }


def workflow_view(wf: Doc, *, samples: list[Sample], failures: dict[int, str], now: dt.datetime, note: str = "") -> Doc:
    status = wf.get("status") or {}
    spec = wf.get("spec") or {}
    cells = grid(status)
    total = int((status.get("partitions") or {}).get("total") or 0)
    history = seeded(wf, samples)
    final = status.get("phase") in TERMINAL
    ahead = Estimate(None, None) if final else estimate(history, total=total, now=now)
    failed = [i for i, code in enumerate(cells.cells) if code == CODE["failed"]]
    counts = status.get("partitions") or {}
    unnamed = [state for state in ("running", "queued") if counts.get(state) and not status.get(f"{state}Indexes")]
    if unnamed:  # an operator from before status.runningIndexes and queuedIndexes
        note = " ".join(
            filter(
                None,
                [
                    note,
                    f"the status names no {' or '.join(unnamed)} partitions (an older operator): "
                    "the grid and the counts here show them as pending (kubectl get pwf counts them)",
                ],
            )
        )
    return {
        **summary(wf),
        "message": status.get("message", ""),
        "uid": wf["metadata"].get("uid", ""),
        "resourceVersion": wf["metadata"].get("resourceVersion", ""),
        "suspended": bool(spec.get("suspend")),
        "maxConcurrency": spec.get("maxConcurrency"),
        "conditions": status.get("conditions") or [],
        "cells": cells.cells,
        "attempts": {str(k): v for k, v in cells.attempts.items()},
        "history": [{"at": s.at.isoformat(), "done": s.done, "replicated": s.replicated} for s in history],
        "replicates": bool((spec.get("replication") or {}).get("destinations")),
        "eta": {"perMinute": ahead.per_minute, "secondsLeft": ahead.seconds_left},
        "failed": [
            {"partition": i, "attempt": cells.attempts.get(i, 1), "why": failures.get(i, "")} for i in failed[:200]
        ],
        "failedCount": len(failed),
        "replication": status.get("replication"),
        "reduce": status.get("reduce"),
        "manifest": status.get("manifest", ""),
        "startTime": status.get("startTime"),
        "completionTime": status.get("completionTime"),
        "now": now.isoformat(),
        "note": note,
    }
