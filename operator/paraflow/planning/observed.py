"""What one pass saw: the workflow's child Jobs, and what the reconciler read for the planner
(the plan, replication reports, the reduce step's record, why pods stall)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from paraflow.planning.stalls import Stall
from paraflow.planning.tracking import JobFacts
from paraflow.reasons import Reason
from paraflow_worker.contract import InputReason


@dataclass(frozen=True)
class PlanRead:
    """The outcome of reading the partitioner's plan.json: a count, or why it is unusable."""

    partition_count: int | None = None
    error_reason: Reason | InputReason | None = None
    error_message: str = ""


@dataclass(frozen=True)
class ReplicationTally:
    """One replication Job's report, summed over its pods and destinations."""

    copied: int = 0
    bytes: int = 0
    skipped: int = 0
    failed: int = 0
    deleted: int = 0
    first_failure: str = ""
    deletions: tuple[str, ...] = ()  # "<destination>:<key>" of the first few deleted replicas
    reports: str = ""  # where the reports listing every deletion are


@dataclass(frozen=True)
class Admission:
    """What Kueue says of a queued Job's Workload. ``stuck``: it can never be admitted as things
    stand (its LocalQueue or ClusterQueue missing or inactive, or the Workload deactivated), so
    waiting is no longer progress."""

    message: str
    stuck: bool = False


@dataclass(frozen=True)
class Observed:
    jobs: Sequence[JobFacts]
    generation: int
    now: dt.datetime
    uid: str
    redrive_token: str = ""
    plan: PlanRead | None = None
    # Reports of finished replication Jobs the planner asked for (needs_reports), by Job name.
    reports: Mapping[str, ReplicationTally] | None = None
    # The record of a succeeded reduce attempt, when asked for (needs_reduce_record): attempt ->
    # '' when it is there and valid, else why not.
    reduce_records: Mapping[int, str] | None = None
    # Jobs one pass may create, all kinds together: a workflow raised to 10,000 at once is
    # created over several passes and cannot starve the others (the Job controller caps its
    # pod creates per sync the same way).
    max_creates: int = 500
    # succeededJobs: Delete keeps this many of a running workflow's newest succeeded Jobs.
    kept_while_running: int = 1000
    # A child Job with no pod ready or finished for this long is stalled: the reconciler asks why
    # (sparingly). ``stall_asked``: the Jobs it asked about this pass; ``stall``: the cause it
    # found, if any (none found: no asked Job has one now).
    stall_seconds: float = 8.0
    stall_asked: tuple[str, ...] = ()
    stall: Stall | None = None
    # What Kueue says of the oldest queued child's Workload (why it is not admitted), if read.
    admission: Admission | None = None
    # Jobs whose pods' logs are stored in the run's prefix (None: not known).
    logs_kept: frozenset[str] | None = None
