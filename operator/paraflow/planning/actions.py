"""What a pass decides: the status to write, the Jobs to create and delete, the Events, and when
to come back. The planner's stages fill one :class:`Plan`; the reconciler applies it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from paraflow.models import WorkflowStatus
from paraflow.planning.conditions import set_condition
from paraflow.reasons import ConditionType, Reason
from paraflow_worker.contract import InputReason


@dataclass(frozen=True)
class CreatePartitioner:
    pass


@dataclass(frozen=True)
class CreatePartition:
    index: int
    attempt: int


@dataclass(frozen=True)
class CreateReplication:
    """``index`` is the partition (perPartition), or 0 for the run-wide copy (afterAll)."""

    index: int
    attempt: int
    winner: int  # the partition's winning attempt (perPartition); 0 for afterAll
    reduce_attempt: int | None = None  # afterAll with a reduce step: its winning attempt


@dataclass(frozen=True)
class CreateReduce:
    attempt: int


Create = CreatePartitioner | CreatePartition | CreateReduce | CreateReplication

# The apiserver refuses an Event whose message is longer (in bytes), and the Event is lost.
EVENT_MESSAGE_MAX_BYTES = 1024


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str  # a Reason, a phase (phase changes), or a pod's reason passed through (PodsBlocked)
    message: str

    def bounded_message(self) -> str:
        """The message cut to what an Event can hold, marked with an ellipsis where it was cut."""
        data = self.message.encode()
        if len(data) <= EVENT_MESSAGE_MAX_BYTES:
            return self.message
        return data[: EVENT_MESSAGE_MAX_BYTES - 3].decode(errors="ignore") + "…"


CAPPED_REQUEUE_SECONDS = 1.0
# Jobs whose logs one pass reads and stores: a thousand partitions failing at once are kept over
# several passes, each short.
LOGS_PER_PASS = 20


@dataclass
class Plan:
    status: WorkflowStatus
    creates: list[Create] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Set when the workflow just finished: (index, winning attempt) of each succeeded partition.
    manifest: list[tuple[int, int]] | None = None
    requeue_after: float | None = None
    # Succeeded partition Jobs to delete (succeededJobs: Delete), by name.
    deletes: list[str] = field(default_factory=list)
    # Finished Jobs whose pods' logs to store (spec.logs.keep) before anything is deleted.
    logs_owed: list[str] = field(default_factory=list)

    @property
    def keep_logs(self) -> list[str]:
        """The Jobs whose logs this pass stores: its share of those owed."""
        return self.logs_owed[:LOGS_PER_PASS]

    def come_back_within(self, seconds: float) -> None:
        """The next pass is due at the latest in ``seconds`` (the soonest of all that ask)."""
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)

    def room(self, slots: int, cap: int) -> int:
        """``slots`` bounded by what the pass may still create; if that bounds it, come back soon."""
        left = cap - len(self.creates)
        if slots > left:
            self.come_back_within(CAPPED_REQUEUE_SECONDS)
        return min(slots, left)

    def hold(self, type_: ConditionType, reason: str, message: str, *, now: dt.datetime) -> None:
        """Sets the condition, as of the generation this pass observed."""
        st = self.status
        st.conditions = set_condition(
            st.conditions, type_, reason=reason, message=message, generation=st.observed_generation, now=now
        )

    def fail(self, reason: Reason | InputReason, message: str, now: dt.datetime) -> None:
        self.status.phase, self.status.message = "Failed", message
        self.hold(ConditionType.FAILED, reason, message, now=now)
