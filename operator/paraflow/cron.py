"""Cron schedules: CronJob's syntax (five fields, or an @ alias) evaluated in a time zone by
cronsim, which follows Debian cron through daylight-saving changes."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _field(value: str, *, names: str = "", question: bool = False) -> str:
    """One cron field as a pattern: lists of *, values, ranges, with steps (and ? for the days)."""
    one = f"({value}{'|' + names if names else ''})"
    atom = rf"(\*|{one}(-{one})?)(/[0-9]{{1,2}})?"
    return f"({'[?]|' if question else ''}{atom}(,{atom})*)"


MONTHS = "(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
DAYS = "(?i:sun|mon|tue|wed|thu|fri|sat)"
# What the apiserver checks by itself (a pattern in the CRD, so a bad schedule is refused at
# admission): an alias, or five fields whose values are in range. What a pattern cannot see (a
# date that never comes, like 30 February) the operator finds with cronsim.
SHAPE = (
    "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " ".join(
        [
            _field("[0-5]?[0-9]"),
            _field("[01]?[0-9]|2[0-3]"),
            _field("0?[1-9]|[12][0-9]|3[01]", question=True),
            _field("0?[1-9]|1[0-2]", names=MONTHS),
            _field("[0-7]", names=DAYS, question=True),
        ]
    )
    + ")$"
)


def _expression(schedule: str) -> str:
    # CronJob reads "?" in the day fields as "*"; cronsim knows only "*".
    return ALIASES.get(schedule.strip(), schedule.strip()).replace("?", "*")


def check(schedule: str) -> None:
    """Raises ValueError naming what is wrong, or if the schedule never fires (e.g. 30 February)."""
    try:
        next(CronSim(_expression(schedule), dt.datetime(2000, 1, 1)))
    except CronSimError as e:
        raise ValueError(f"not a cron schedule: {e}") from e
    except StopIteration as e:
        raise ValueError(f"{schedule!r} never fires") from e


def slots(schedule: str, zone: str, after: dt.datetime) -> Iterator[dt.datetime]:
    """The schedule's times strictly after ``after``, in UTC, in order."""
    local = after.astimezone(zoneinfo.ZoneInfo(zone))
    for at in CronSim(_expression(schedule), local):
        yield at.astimezone(dt.UTC)


def slots_between(
    schedule: str, zone: str, after: dt.datetime, *, until: dt.datetime, most: int
) -> tuple[list[dt.datetime], bool]:
    """The latest ``most`` times in (after, until], in order, and whether older ones were left
    out. Walks back from ``until``: a year of downtime of a per-minute schedule costs ``most``
    steps, not half a million."""
    local = (until + dt.timedelta(minutes=1)).astimezone(zoneinfo.ZoneInfo(zone))
    found: list[dt.datetime] = []
    for at in CronSim(_expression(schedule), local, reverse=True):
        utc = at.astimezone(dt.UTC)
        if utc > until:
            continue
        if utc <= after:
            return found[::-1], False
        if len(found) == most:
            return found[::-1], True
        found.append(utc)
    return found[::-1], False
