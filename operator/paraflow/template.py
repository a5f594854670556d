"""A run's parameters: ``{{ scheduledTime }}`` in the documented fields of a schedule's workflow
template, replaced by the run's slot. Deliberately small: one name and two filters, no code.

    {{ scheduledTime }}                                  2026-12-07T00:00:00Z (UTC, RFC 3339)
    {{ scheduledTime | date "%Y/%m/%d" }}                2026/12/07, in the schedule's time zone
    {{ scheduledTime | shift "-1d" | date "%Y-%m-%d" }}  2026-12-06: the day before

``shift`` moves the time by whole days (on the calendar of the schedule's time zone, so a day
is 23 or 25 hours across a daylight-saving change) or by hours and minutes (of real time, so
an hourly schedule shifted by an hour never skips or repeats an hour); ``date`` formats it with
strftime directives from a fixed set, and comes last. Anything else is an error at admission (the CRD's CEL rules use
``FIELD``) and again in the operator, which names the field.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

DIRECTIVES = "YmdHMSjyGVuWbBaA%"
_SHIFT = r'\s*\|\s*shift\s+"[+-]?[0-9]{1,4}[dhm]"'
_DATE = rf'\s*\|\s*date\s+"([^"%{{}}]|%[{DIRECTIVES}])*"'
# Shifts first, then at most one date: each filter reads the time the one before made.
PLACEHOLDER = rf"\{{\{{\s*scheduledTime({_SHIFT})*({_DATE})?\s*\}}\}}"
# A whole field: text with no '{{' but where a valid placeholder starts.
FIELD = rf"^([^{{]|\{{[^{{]|{PLACEHOLDER})*\{{?$"
# Where parameters may be (camelCase paths in a WorkflowSpec; [] is every item of a list).
PLACES = (
    "input.prefix",
    "output.prefix",
    "partitioner.builtin.keyGlob",
    "replication.destinations[].prefix",
    "processor.env[].value",
    "reduce.env[].value",
    "partitioner.container.env[].value",
)
HELP = (
    'a parameter is {{ scheduledTime }}, optionally with | shift "-1d" (d, h or m) and | date "%Y-%m-%d" '
    f"(directives %{', %'.join(DIRECTIVES)})"
)
_STEP = re.compile(r"\s*\|\s*(shift|date)\s+\"([^\"]*)\"")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def _walk(node: Any, path: str) -> list[tuple[str, str]]:
    """Every string in ``node`` with its path (lists as ``[]``)."""
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, dict):
        return [found for k, v in node.items() for found in _walk(v, f"{path}.{k}" if path else k)]
    if isinstance(node, list):
        return [found for v in node for found in _walk(v, f"{path}[]")]
    return []


def problems(spec: dict[str, Any]) -> list[str]:
    """What is wrong with the parameters of a template's spec (its camelCase JSON form)."""
    found = []
    for path, text in _walk(spec, ""):
        if "{{" not in text:
            continue
        if path not in PLACES:
            found.append(f"{path}: parameters are filled in only in {', '.join(PLACES)}")
        elif not re.fullmatch(FIELD, text):
            found.append(f"{path}: {text!r}: {HELP}")
    return found


def render(spec: dict[str, Any], scheduled: dt.datetime, zone: dt.tzinfo) -> dict[str, Any]:
    """The spec with every parameter replaced; ``scheduled`` is the slot, shown in ``zone``."""

    def fill(match: re.Match[str]) -> str:
        at = scheduled.astimezone(zone)
        fmt = None
        for kind, arg in _STEP.findall(match.group(0)):
            if kind == "date":
                fmt = arg
            elif arg[-1] == "d":
                # Wall-clock days: the same local time on another date (zoneinfo works it out).
                at = (at.replace(tzinfo=None) + dt.timedelta(days=int(arg[:-1]))).replace(tzinfo=zone)
            else:
                at = (at.astimezone(dt.UTC) + dt.timedelta(**{_UNITS[arg[-1]]: int(arg[:-1])})).astimezone(zone)
        if fmt is None:
            return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return at.strftime(fmt)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return re.sub(PLACEHOLDER, fill, node) if "{{" in node else node
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    rendered: dict[str, Any] = walk(spec)
    return rendered
