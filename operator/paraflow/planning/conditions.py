"""Standard-shape conditions: lastTransitionTime moves only when the status value changes."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from paraflow.models import Condition


def set_condition(
    conditions: list[Condition],
    type_: str,
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
    status: Literal["True", "False", "Unknown"] = "True",
) -> list[Condition]:
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:2048],
        last_transition_time=since,
        observed_generation=generation,
    )
    return [*(c for c in conditions if c.type != type_), new]


def remove_condition(conditions: list[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.type != type_]


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
