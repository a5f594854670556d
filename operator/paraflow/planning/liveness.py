"""States with an exit: a run whose children wait for pods says why (``PodsBlocked``, phase
``Blocked``), and one where nothing moves for ``progressDeadlineSeconds`` fails instead of
waiting forever."""

from __future__ import annotations

from collections.abc import Sequence

from paraflow.models import TERMINAL, WorkflowSpec, WorkflowStatus
from paraflow.planning import queueing, stalls
from paraflow.planning.actions import Event, Plan
from paraflow.planning.conditions import get_condition, remove_condition
from paraflow.planning.observed import Observed
from paraflow.planning.tracking import JobFacts
from paraflow.reasons import ConditionType, Reason


def pods_blocked(out: Plan, obs: Observed, *, active: Sequence[JobFacts]) -> None:
    """``PodsBlocked`` while a child has waited ``stall_seconds`` for a pod and the reconciler found
    why; cleared once no child waits that long. No Job event may come while pods are refused, so
    the pass comes back when the next child would be due."""
    st = out.status
    after = obs.stall_seconds
    ages = [(obs.now - j.created_at).total_seconds() for j in active if j.stalled and j.created_at is not None]
    if ages:
        out.come_back_within(min(after - age if age < after else after for age in ages))
    old = get_condition(st.conditions, ConditionType.PODS_BLOCKED)
    healed = old is not None and obs.stall is None and any(stalls.is_about(old.message, j) for j in obs.stall_asked)
    if not any(age >= after for age in ages) or healed:
        # Nobody waits long enough, or the Job the condition names was asked about again and
        # has no cause any more (a refusal fixed, now a slow image pull): nothing to say.
        st.conditions = remove_condition(st.conditions, ConditionType.PODS_BLOCKED)
        return
    if obs.stall is None:
        return  # not asked about that Job this pass: what the last answer said still holds
    if old is not None and old.reason == obs.stall.reason:
        return  # the same cause, found on another Job: no new Event, no status write
    out.events.append(Event("Warning", obs.stall.reason, obs.stall.line()))
    out.hold(ConditionType.PODS_BLOCKED, obs.stall.reason, obs.stall.line(), now=obs.now)


def _milestones(st: WorkflowStatus) -> tuple[object, ...]:
    """What moves when a run makes progress."""
    rs, rd = st.replication, st.reduce
    return (
        st.partitions.total,
        st.succeeded_indexes,
        st.failed_indexes,
        st.manifest,
        (rs.replicated_indexes, rs.failed_indexes, rs.objects) if rs is not None else None,
        (rd.phase, rd.attempt) if rd is not None else None,
    )


def progress_deadline(
    out: Plan, spec: WorkflowSpec, before: WorkflowStatus, *, obs: Observed, active: Sequence[JobFacts]
) -> None:
    """A run whose every active child waits for a pod, with nothing else moving, fails once that
    has lasted ``progressDeadlineSeconds`` instead of waiting forever. Its stuck Jobs go (the
    failed run writes its manifest once nothing is active), and a redrive re-runs them."""
    st = out.status
    if st.phase == "Failed":
        # A failed run starts nothing more, and one whose child never got a pod would never
        # settle (nor write its manifest): those children go, each pass until they are gone.
        out.deletes += [j.name for j in _waiting_long(active, obs) if j.name not in out.deletes]
    stuck = (
        st.phase not in TERMINAL
        and not spec.suspend
        and bool(active)
        and all(j.stalled or queueing.stuck(j, obs) for j in active)
        and not out.creates
        and _milestones(st) == _milestones(before)
    )
    if not stuck:
        st.no_progress_since = None
        return
    since = st.no_progress_since = st.no_progress_since or obs.now
    left = spec.progress_deadline_seconds - (obs.now - since).total_seconds()
    if left > 0:
        out.come_back_within(left)
        return
    blocked = get_condition(st.conditions, ConditionType.PODS_BLOCKED) or get_condition(
        st.conditions, ConditionType.QUEUED
    )
    why = blocked.message if blocked is not None else "no child Job got a pod running"
    out.fail(
        Reason.PROGRESS_DEADLINE_EXCEEDED,
        f"no progress for {spec.progress_deadline_seconds}s (spec.progressDeadlineSeconds): {why}; its waiting Jobs "
        "are deleted and a redrive re-runs them",
        obs.now,
    )
    st.no_progress_since = None
    out.deletes += [j.name for j in active if j.name not in out.deletes]


def _waiting_long(active: Sequence[JobFacts], obs: Observed) -> list[JobFacts]:
    """Active children that have had no pod ready or finished for ``stall_seconds``, and those
    waiting in Kueue's queue: a failed run would otherwise wait for their admission."""
    return [
        j
        for j in active
        if j.queued
        or (j.stalled and j.created_at is not None and (obs.now - j.created_at).total_seconds() >= obs.stall_seconds)
    ]


def all_waiting(active: Sequence[JobFacts]) -> bool:
    """Every active child waits for a pod: the run is not running, however busy it looks."""
    return bool(active) and all(j.stalled for j in active)
