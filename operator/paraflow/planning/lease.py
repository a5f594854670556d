"""Leader election over a coordination.k8s.io/v1 Lease, as client-go decides it (pure rules).

Who may take the Lease is judged only by *local* observation time: a candidate takes it after a
whole ``lease_duration`` during which it saw the record unchanged. The record's own timestamps
are written for humans (``kubectl get lease``) and never trusted, so clock skew between nodes
does not matter.

The leader's writes are fenced by its own monotonic clock: it may write only until
``renew_deadline`` after the *start* of its last successful renewal. Because a candidate waits
``lease_duration`` (longer) after it *saw* that renewal, the old leader's gate is shut before
anyone else can hold the Lease, even when the old leader was paused or cut off from the
apiserver and never learnt that it lost.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace

JITTER = 1.2  # a candidate's retry period is stretched by up to this factor, as in client-go
EXPIRY_MARGIN = 0.05  # a candidate wakes this long after the lease it waits for runs out


class Conflict(Exception):
    """Someone else wrote the Lease since we read it (409): this attempt lost the race."""


class NotLeading(Exception):
    """A write was attempted by a replica that does not hold the Lease (or no longer knows it does)."""


@dataclass(frozen=True)
class Timings:
    lease_duration: float
    renew_deadline: float
    retry_period: float

    def __post_init__(self) -> None:
        if not self.retry_period > 0:
            raise ValueError("the lease retry period must be above 0")
        if not self.renew_deadline > JITTER * self.retry_period:
            raise ValueError(f"the lease renew deadline must exceed {JITTER} times the retry period")
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("the lease duration must exceed its renew deadline")


@dataclass(frozen=True)
class Record:
    holder: str  # "" once released
    lease_duration_seconds: int
    acquire_time: dt.datetime | None
    renew_time: dt.datetime | None
    transitions: int


@dataclass(frozen=True)
class Observed:
    """The record as this replica last read it, and when (local monotonic time) it last changed."""

    record: Record
    version: str
    changed_at: float


def may_hold(observed: Observed | None, me: str, now: float, *, timings: Timings) -> bool:
    """May ``me`` write the record now: it is absent, ours, released, or silent for a whole lease
    (a record without a duration, written by hand, is given ours)."""
    if observed is None:
        return True
    record = observed.record
    if record.holder in ("", me):
        return True
    return now >= observed.changed_at + (record.lease_duration_seconds or timings.lease_duration)


def takeover_in(observed: Observed, now: float, timings: Timings) -> float:
    """Seconds until a standby may take the Lease if its holder does not renew it (0: now)."""
    duration = observed.record.lease_duration_seconds or timings.lease_duration
    return max(0.0, observed.changed_at + duration - now)


def claim(current: Record | None, me: str, wall: dt.datetime, *, timings: Timings) -> Record:
    """The record ``me`` writes to take the Lease or to renew it."""
    seconds = math.ceil(timings.lease_duration)
    if current is not None and current.holder == me:
        return replace(current, renew_time=wall, lease_duration_seconds=seconds)
    transitions = 0 if current is None else current.transitions + 1
    return Record(me, seconds, wall, wall, transitions)


def released(current: Record, wall: dt.datetime) -> Record:
    """The record a leader leaves on a graceful exit: nobody holds it, so a standby takes it at once."""
    return replace(current, holder="", lease_duration_seconds=1, renew_time=wall)


def next_try_in(
    observed: Observed | None, me: str, now: float, *, timings: Timings, leading: bool, draw: float
) -> float:
    """Seconds until the next attempt. The leader renews every retry period; a candidate tries
    every (jittered) retry period, but no later than the moment the holder's lease runs out,
    which takes up to a retry period off every failover. ``draw`` is uniform in [0, 1)."""
    if leading:
        return timings.retry_period
    pause = timings.retry_period * (1 + (JITTER - 1) * draw)
    if observed is not None and observed.record.holder not in ("", me):
        expires = observed.changed_at + (observed.record.lease_duration_seconds or timings.lease_duration)
        pause = min(pause, max(0.0, expires - now) + EXPIRY_MARGIN)
    return pause


def gate_closes_at(renew_started: float, timings: Timings) -> float:
    return renew_started + timings.renew_deadline
