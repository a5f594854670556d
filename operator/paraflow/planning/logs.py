"""Which finished child Jobs' pod logs are owed to the run's prefix (``spec.logs.keep``).

The reconciler stores them before it deletes anything (its own deletes, the workflow's TTL), so
the logs of a failed partition outlive its pods: ``succeededJobs: Delete``, a TTL, a node drain,
the kubelet's garbage collection, or a pod deleted by hand.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from paraflow.models import WorkflowSpec
from paraflow.planning.actions import LOGS_PER_PASS, Event
from paraflow.planning.tracking import JobFacts, JobState
from paraflow.reasons import Reason

PER_PASS = LOGS_PER_PASS  # the Plan keeps them: its keep_logs is this share of those owed
# Failed tries in a row at storing one Job's logs (no right to read them, a node that never
# comes back) before it is given up, so nothing waits on it for ever.
TRIES = 5
# Tuples, not sets: membership then compares by identity, and never calls Enum's __hash__ (in
# Python), which cost a tenth of a pass late in a run that keeps 10,000 Jobs.
WANTED: dict[str, tuple[JobState, ...]] = {
    "failed": (JobState.FAILED,),
    "all": (JobState.FAILED, JobState.SUCCEEDED),
    "none": (),
}


def owed(spec: WorkflowSpec, jobs: Sequence[JobFacts], kept: Collection[str] | None) -> list[JobFacts]:
    """Finished Jobs whose logs ``spec.logs.keep`` asks for and that are not stored yet; with
    ``kept`` unknown (None: not listed since the operator started), every one of them."""
    states = WANTED[spec.logs.keep]
    if not states:
        return []
    return sorted(
        (j for j in jobs if j.state in states and (kept is None or j.name not in kept)),
        key=lambda j: j.name,
    )


def given_up(failures: int) -> bool:
    """True once a Job's logs could not be stored ``TRIES`` times in a row: they are not kept."""
    return failures >= TRIES


def not_kept(error: str, *, job: str | None = None) -> Event:
    """The Warning that the logs of a Job (None: of every Job of the run, its storage unreachable
    when only its logs were owed) will not be kept."""
    what = "its Jobs" if job is None else f"Job {job}"
    return Event("Warning", Reason.LOGS_NOT_KEPT, f"the logs of {what} are not kept: {error}")
