"""Jobs held by the cluster's admission (Kueue): Queued, never stalled, blocked or failed.

paraflow never suspends a child Job, so a suspended one is waiting for Kueue to admit it, or was
preempted back into its queue (its pods were removed without counting as failures, and it
resumes where it was). The run says so in a ``Queued`` condition, and in its message while
nothing else runs: where it waits and, when the reconciler could read it, what Kueue says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from paraflow.models import TERMINAL, WorkflowSpec
from paraflow.planning.actions import Event, Plan
from paraflow.planning.conditions import get_condition, remove_condition
from paraflow.planning.observed import Admission, Observed
from paraflow.planning.tracking import JobFacts
from paraflow.reasons import ConditionType, Reason

INADMISSIBLE = "Inadmissible"  # Kueue's QuotaReserved reason: no LocalQueue or ClusterQueue, or inactive


def queued(out: Plan, spec: WorkflowSpec, obs: Observed, *, active: Sequence[JobFacts]) -> None:
    st = out.status
    old = get_condition(st.conditions, ConditionType.QUEUED)
    waiting = [j for j in active if j.queued]
    if old is not None and st.message == old.message:
        st.message = ""  # said while everything waited: said again below if it still does
    if not waiting or st.phase in TERMINAL:
        st.conditions = remove_condition(st.conditions, ConditionType.QUEUED)
        return
    reason, line = why(spec, waiting, obs.admission)
    if old is None or old.reason != reason:
        kind: Literal["Normal", "Warning"] = "Normal" if reason == Reason.AWAITING_ADMISSION else "Warning"
        out.events.append(Event(kind, reason, line))
    out.hold(ConditionType.QUEUED, reason, line, now=obs.now)
    if len(waiting) == len(active) and st.phase not in ("Blocked", "Suspended"):
        st.message = line
        if obs.admission is not None and obs.admission.stuck:
            st.phase = "Blocked"  # back to its phase by itself once Kueue can admit it


def admission(workloads: Sequence[Mapping[str, Any]]) -> Admission | None:
    """What Kueue says of a Job's Workload: why it has no quota, or why it was evicted."""
    for workload in workloads:
        conditions = {x.get("type"): x for x in (workload.get("status") or {}).get("conditions") or []}
        evicted, reserved = conditions.get("Evicted") or {}, conditions.get("QuotaReserved") or {}
        deactivated = (workload.get("spec") or {}).get("active") is False
        if evicted.get("status") == "True" and reserved.get("status") != "True":
            said = f"evicted ({evicted.get('reason', '')}): {evicted.get('message', '')}"
            return Admission(said, stuck=deactivated)
        if reserved.get("status") == "False" and reserved.get("message"):
            return Admission(str(reserved["message"]), stuck=deactivated or reserved.get("reason") == INADMISSIBLE)
    return None


def stuck(job: JobFacts, obs: Observed) -> bool:
    """A queued Job Kueue says it cannot admit: it waits as a Job whose pods cannot start does."""
    return job.queued and obs.admission is not None and obs.admission.stuck


def why(spec: WorkflowSpec, waiting: Sequence[JobFacts], admission: Admission | None) -> tuple[Reason, str]:
    said = f": {admission.message}" if admission else ""
    if admission is not None and admission.stuck and spec.queue_name:
        return Reason.QUEUE_INADMISSIBLE, (
            f"{len(waiting)} Job(s) cannot be admitted by Kueue as things stand{said}; "
            "the run fails at progressDeadlineSeconds unless that changes"
        )
    if spec.queue_name:
        return Reason.AWAITING_ADMISSION, (
            f"{len(waiting)} Job(s) wait for admission in Kueue LocalQueue {spec.queue_name}{said}"
        )
    return Reason.SUSPENDED_WITHOUT_QUEUE, (
        f"{len(waiting)} Job(s) are held suspended by the cluster's admission (Kueue manages Jobs without a "
        f"queue name here), and spec.queueName is not set: set it to a LocalQueue of this namespace{said}"
    )
