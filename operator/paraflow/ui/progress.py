"""How fast a run goes and when it will end: the partitions done and replicated over time, as the
view saw them change, and an estimate from the recent rate."""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass

# The rate is the one of the last few minutes: a run slows and speeds up (a redrive, a busy
# cluster), and the whole run's average would hide it.
WINDOW = dt.timedelta(minutes=5)
KEPT = 5000  # samples per run; a day of one change every 20 s


@dataclass(frozen=True)
class Sample:
    at: dt.datetime
    done: int  # succeeded + failed for good
    replicated: int
    round: int = 0  # redrives taken: a redrive takes its failed partitions out of "done"


@dataclass(frozen=True)
class Estimate:
    per_minute: float | None  # partitions done per minute, recently; None before two samples
    seconds_left: float | None  # None: no rate to go by, or nothing left to do


class History:
    """The samples of one run, in time order, one per change."""

    def __init__(self) -> None:
        self.samples: deque[Sample] = deque(maxlen=KEPT)

    def add(self, sample: Sample) -> None:
        last = self.samples[-1] if self.samples else None
        if last is None or (last.done, last.replicated, last.round) != (sample.done, sample.replicated, sample.round):
            self.samples.append(sample)


def estimate(samples: list[Sample], *, total: int, now: dt.datetime) -> Estimate:
    """From the samples of the current round only: a redrive's drop in "done" is no slowdown."""
    if samples:
        samples = [s for s in samples if s.round == samples[-1].round]
    if len(samples) < 2:
        return Estimate(None, None)
    last = samples[-1]
    first = next((s for s in samples if s.at >= now - WINDOW), samples[-2])
    if first is last:
        first = samples[-2]
    minutes = (now - first.at).total_seconds() / 60
    if minutes <= 0:
        return Estimate(None, None)
    rate = (last.done - first.done) / minutes
    left = total - last.done
    if left <= 0 or rate <= 0:
        return Estimate(rate, None)
    return Estimate(rate, left / rate * 60)
