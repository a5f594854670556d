"""Why a child Job's pods do not run: refused at admission, unschedulable, image or config errors.

A Job whose pods are refused (Pod Security, quota, a webhook) records only ``FailedCreate``
Events and no status condition, so a workflow would sit in its phase forever with nothing said.
The reconciler asks about Jobs that have stayed without a ready or finished pod for a while; what
it learns is turned here into one line for the workflow's ``PodsBlocked`` condition and Event.
Pure: the Events and Pods come in as the apiserver's dicts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from paraflow.planning.tracking import JobFacts

# Container waiting reasons that do not heal by waiting a little longer.
STUCK_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class Stall:
    job: str
    reason: str
    message: str

    def line(self) -> str:
        return f"Job {self.job}: {self.reason}: {self.message}"


def is_about(line: str, job: str) -> bool:
    """Whether ``line`` (a ``Stall.line()``) names ``job``."""
    return line.startswith(f"Job {job}: ")


def to_ask(
    jobs: Sequence[JobFacts],
    now: dt.datetime,
    after_seconds: float,
    *,
    asked: Mapping[str, float],
    clock: float,
    limit: int,
) -> list[JobFacts]:
    """The oldest Jobs stalled for longer than ``after_seconds`` and not asked about in the last
    ``after_seconds`` (``asked``: Job name -> monotonic time of the last question), at most ``limit``."""
    due = [
        j
        for j in jobs
        if j.stalled
        and j.created_at is not None
        and (now - j.created_at).total_seconds() >= after_seconds
        and clock - asked.get(j.name, -after_seconds) >= after_seconds
    ]
    return sorted(due, key=lambda j: (j.created_at or now, j.name))[:limit]


def _when(item: Mapping[str, Any]) -> str:
    return str(item.get("lastTimestamp") or item.get("eventTime") or item.get("metadata", {}).get("creationTimestamp"))


def diagnose(job: str, events: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]) -> Stall | None:
    """The first pod that cannot be scheduled or start, else a refusal to create a pod newer than
    the last pod created (an old refusal, since healed, says nothing about now)."""
    for pod in pods:
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return Stall(job, str(cond.get("reason") or "Unschedulable"), str(cond.get("message", "")))
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_WAITING:
                return Stall(job, str(waiting["reason"]), str(waiting.get("message", "")))
    refused = [e for e in events if e.get("reason") == "FailedCreate"]
    created = [_when(e) for e in events if e.get("reason") == "SuccessfulCreate"]
    if refused and (newest := max(refused, key=_when)) and _when(newest) >= max(created, default=""):
        return Stall(job, "FailedCreate", str(newest.get("message", "")))
    return None
