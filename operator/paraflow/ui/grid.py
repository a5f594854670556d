"""Where each partition of a run stands, from its status alone: one cell per partition.

A status names partitions by range-compressed index sets (succeeded, failed, running, queued) and
the latest attempt of those retried; everything else of the plan is pending, or, once a failed
run is final, not run. 100,000 partitions make a 100,000-character string, one digit per cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paraflow.models import TERMINAL
from paraflow.planning import indexsets

# A cell's digit is its index here; the page colours by it (static/app.js keeps the same order).
STATES = ("pending", "queued", "running", "retrying", "succeeded", "failed", "notRun")
CODE = {state: str(i) for i, state in enumerate(STATES)}


@dataclass(frozen=True)
class Grid:
    cells: str  # one digit of STATES per partition, in index order
    attempts: dict[int, int]  # the latest attempt of each partition tried more than once

    def counts(self) -> dict[str, int]:
        return {state: self.cells.count(CODE[state]) for state in STATES}


def grid(status: Mapping[str, Any]) -> Grid:
    total = int((status.get("partitions") or {}).get("total") or 0)
    attempts = {
        index: int(attempt)
        for attempt, found in (status.get("attempts") or {}).items()
        for index in indexsets.expand(found)
        if index < total
    }
    final = status.get("phase") in TERMINAL
    cells = bytearray((CODE["notRun"] if final else CODE["pending"]).encode() * total)
    # Later sets win: a partition retried while running is retrying; success and failure are final.
    for state, field in (("queued", "queuedIndexes"), ("running", "runningIndexes")):
        for index in indexsets.expand(status.get(field, "")):
            if index < total:
                retried = attempts.get(index, 1) > 1
                cells[index] = ord(CODE["retrying" if retried and state == "running" else state])
    for state, field in (("succeeded", "succeededIndexes"), ("failed", "failedIndexes")):
        for index in indexsets.expand(status.get(field, "")):
            if index < total:
                cells[index] = ord(CODE[state])
    return Grid(cells.decode(), attempts)
