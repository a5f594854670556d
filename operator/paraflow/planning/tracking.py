"""Where every *unit* of work stands: a partition's processing, or its replication.

A unit runs as numbered attempts, each one Job. From the Jobs observed and the sets already
recorded in status, :func:`track` tells which units succeeded, failed for good, are running,
are due for a retry, or wait for their backoff; :func:`schedule` picks what to start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from paraflow.models import RetrySpec
from paraflow.planning import indexsets
from paraflow.planning.retry import delay_seconds
from paraflow.reasons import Reason


class JobState(Enum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobFacts:
    """What the planner needs to know of one child Job (extracted by the k8s adapter)."""

    name: str
    role: str
    partition: int | None
    attempt: int
    state: JobState
    finished_at: dt.datetime | None = None
    message: str = ""
    # False when the Job failed on a nonRetryableExitCodes rule: no new attempt is made.
    retryable: bool = True
    # When it was created, or when its queue (Kueue) let it start: the time its pods wait from.
    created_at: dt.datetime | None = None
    # Active, with no pod ready or finished yet: its pods may be refused or unschedulable.
    stalled: bool = False
    # Suspended by the cluster's admission (Kueue): waiting in a queue, or preempted back into it.
    queued: bool = False
    # The object's uid: a delete names it, so it can only ever remove the Job that was judged.
    uid: str = ""
    # Set when paraflow, not Kubernetes, judged the attempt failed (e.g. ReduceNotRecorded).
    reason: Reason | None = None


@dataclass
class Progress:
    latest: dict[int, int] = field(default_factory=dict)
    jobs: dict[tuple[int, int], JobFacts] = field(default_factory=dict)
    succeeded: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    newly_failed: set[int] = field(default_factory=set)
    active: set[int] = field(default_factory=set)
    due: list[int] = field(default_factory=list)
    waiting: dict[int, float] = field(default_factory=dict)

    def current_job(self, unit: int) -> JobFacts | None:
        return self.jobs.get((unit, self.latest.get(unit, 1)))

    def attempt_sets(self) -> dict[str, str]:
        return attempt_sets(self.latest)


def attempt_sets(latest: dict[int, int]) -> dict[str, str]:
    """Attempt number -> units whose latest attempt it is; only attempts above 1."""
    groups: dict[int, list[int]] = {}
    for unit, attempt in latest.items():
        if attempt > 1:
            groups.setdefault(attempt, []).append(unit)
    return {str(a): indexsets.compress(units) for a, units in sorted(groups.items())}


def latest_attempts(
    jobs: Iterable[JobFacts], unit_of: Callable[[JobFacts], int | None], attempts: dict[str, str]
) -> dict[int, int]:
    """Each unit's latest attempt: the recorded sets, raised by any newer Job observed."""
    latest = _recorded(attempts)
    for facts in jobs:
        owner = unit_of(facts)
        if owner is not None:
            _raise_to(latest, owner, facts.attempt)
    return latest


def _recorded(attempts: dict[str, str]) -> dict[int, int]:
    latest: dict[int, int] = {}
    for attempt_text, ranges in attempts.items():
        attempt = int(attempt_text)
        latest.update(dict.fromkeys(indexsets.expand(ranges), attempt))
    return latest


def _raise_to(latest: dict[int, int], unit: int, attempt: int) -> None:
    known = latest.get(unit)
    if known is None or attempt > known:
        latest[unit] = attempt if attempt > 1 else 1


def fresh_attempts(
    jobs: Iterable[JobFacts],
    unit_of: Callable[[JobFacts], int | None],
    *,
    attempts: dict[str, str],
    units: set[int],
    budget: Budget,
) -> dict[str, str]:
    """The attempt sets with each of ``units`` moved to the first attempt of the budget's round,
    which has no Job yet: a redrive starts them again whatever ended them, a non-retryable exit
    code included, each with a whole maxAttempts."""
    latest = latest_attempts(jobs, unit_of, attempts)
    for unit in units:
        latest[unit] = max(latest.get(unit, 1) + 1, budget.first_of_round)
    return attempt_sets(latest)


@dataclass(frozen=True)
class Budget:
    retry: RetrySpec
    redrives: int

    @property
    def attempts(self) -> int:
        """After r redrives, every unit may use up to maxAttempts x (r + 1) attempts in total."""
        return self.retry.max_attempts * (self.redrives + 1)

    @property
    def first_of_round(self) -> int:
        """Redrive r starts each unit it re-runs at attempt maxAttempts x r + 1: the unit then
        has exactly maxAttempts attempts, however few it used before."""
        return self.retry.max_attempts * self.redrives + 1

    def in_round(self, attempt: int) -> int:
        """The attempt's rank within its round (1 for the first): backoff grows within a round."""
        return (attempt - 1) % self.retry.max_attempts + 1


def track(
    jobs: Iterable[JobFacts],
    unit_of: Callable[[JobFacts], int | None],
    *,
    attempts: dict[str, str],
    succeeded: str,
    failed: str,
    budget: Budget,
    seed: str,
    now: dt.datetime,
) -> Progress:
    # One walk over the Jobs, and set operations for the rest: late in a run that keeps its Jobs
    # (succeededJobs: Retain) a pass sees every Job made so far, most of them long recorded.
    # (Locals, not attribute lookups, in the loop: an Enum member's lookup on its class is slow.)
    out = Progress(latest=_recorded(attempts))
    latest, by_attempt, succeeded_state = out.latest, out.jobs, JobState.SUCCEEDED
    for facts in jobs:
        owner = unit_of(facts)
        if owner is None:
            continue
        attempt = facts.attempt
        by_attempt[(owner, attempt)] = facts
        known = latest.get(owner)
        if known is None or attempt > known:
            latest[owner] = attempt if attempt > 1 else 1
    out.succeeded = indexsets.expand(succeeded)
    # Only the current attempt counts: after a redrive bumps a unit's attempt, its old success
    # no longer does.
    out.succeeded.update(u for (u, a), job in by_attempt.items() if a == latest[u] and job.state is succeeded_state)
    recorded_failed = indexsets.expand(failed) - out.succeeded
    out.failed = set(recorded_failed)
    for unit in latest.keys() - out.succeeded - recorded_failed:
        attempt = latest[unit]
        job = out.jobs.get((unit, attempt))
        if job is None:
            continue  # never created, or deleted by hand: pending, (re)created by schedule()
        if job.state is JobState.ACTIVE:
            out.active.add(unit)
        elif job.state is JobState.FAILED:
            if attempt >= budget.attempts or not job.retryable:
                out.failed.add(unit)
                continue
            finished = job.finished_at or now
            delay = delay_seconds(budget.retry, budget.in_round(attempt), f"{seed}/{unit}")
            wait = delay - (now - finished).total_seconds()
            if wait <= 0:
                out.due.append(unit)
            else:
                out.waiting[unit] = wait
    out.newly_failed = out.failed - recorded_failed
    return out


def schedule(progress: Progress, candidates: Iterable[int], slots: int) -> list[tuple[int, int]]:
    """Up to ``slots`` (unit, attempt) to start: due retries first, then candidates in order
    whose current attempt has no Job yet. Updates ``progress.latest`` for the retries."""
    starts: list[tuple[int, int]] = []
    for unit in sorted(progress.due)[: max(0, slots)]:
        progress.latest[unit] += 1
        starts.append((unit, progress.latest[unit]))
    starts.extend(_fresh(progress, candidates, slots - len(starts)))
    return starts


def _fresh(progress: Progress, candidates: Iterable[int], limit: int) -> Iterator[tuple[int, int]]:
    if limit <= 0:
        return
    busy = progress.succeeded | progress.failed | progress.active | set(progress.due) | set(progress.waiting)
    taken = 0
    for unit in candidates:
        attempt = progress.latest.get(unit, 1)
        if unit in busy or (unit, attempt) in progress.jobs:
            continue
        yield unit, attempt
        taken += 1
        if taken >= limit:
            return
