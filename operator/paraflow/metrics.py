"""Prometheus metrics. Gauges are recomputed from each workflow's last written status, so they
are right after a restart too; counters count what this process did."""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Gauge

from paraflow.models import Phase, WorkflowStatus

WORKFLOWS = Gauge("paraflow_workflows", "Workflows by phase", ["phase"])
PARTITIONS = Gauge("paraflow_partitions", "Partitions of all workflows by state", ["state"])
REPLICATED_OBJECTS = Gauge("paraflow_replicated_objects", "Objects copied by replication, all workflows")
REPLICATED_BYTES = Gauge("paraflow_replicated_bytes", "Bytes copied by replication, all workflows")
REPLICATION_PENDING = Gauge(
    "paraflow_replication_pending_partitions", "Succeeded partitions whose outputs wait for replication (the lag)"
)
JOBS_CREATED = Counter("paraflow_jobs_created_total", "Jobs created", ["role"])
JOBS_DELETED = Counter("paraflow_jobs_deleted_total", "Succeeded partition Jobs deleted (succeededJobs: Delete)")
JOBS_ALREADY_EXISTED = Counter("paraflow_job_create_conflicts_total", "Job creates answered 409: it existed", ["role"])
API_ERRORS = Counter("paraflow_reconcile_errors_total", "Reconcile passes that raised", ["kind"])
SCHEDULED_RUNS = Counter(
    "paraflow_scheduled_runs_total", "Runs of schedules that ended, by how", ["namespace", "schedule", "phase"]
)
HOOK_DELIVERIES = Counter("paraflow_hook_deliveries_total", "Completion webhook deliveries, by result", ["result"])
PASSES = Counter("paraflow_reconcile_passes_total", "Reconcile passes run")
LEADER = Gauge("paraflow_leader", "1 while this replica holds the Lease and runs passes, else 0")
API_WRITES = Counter("paraflow_api_writes_total", "Writes sent to the apiserver (Events excluded)", ["verb"])

STATES = ("pending", "queued", "running", "succeeded", "failed", "not_run")


Share = tuple[str, tuple[int, ...], int, int, int]


def _share(status: WorkflowStatus) -> Share:
    """What one workflow adds to the gauges: its phase, its partitions by state, its replication
    (objects, bytes, partitions waiting)."""
    rs = status.replication
    counts = tuple(getattr(status.partitions, state) for state in STATES)
    return status.phase, counts, rs.objects if rs else 0, rs.bytes if rs else 0, rs.pending if rs else 0


class _Totals:
    """The gauges' sums over every workflow's last status, kept by difference: a pass changes
    one workflow's share, not a walk over all of them."""

    def __init__(self) -> None:
        self.shares: dict[str, Share] = {}
        self.phases: dict[str, int] = dict.fromkeys(get_args(Phase), 0)
        self.states = [0] * len(STATES)
        self.objects = self.bytes = self.pending = 0

    def update(self, uid: str, share: Share | None) -> None:
        old = self.shares.pop(uid, None)
        if old is not None:
            self._add(old, -1)
        if share is not None:
            self.shares[uid] = share
            self._add(share, 1)

    def _add(self, share: Share, sign: int) -> None:
        phase, counts, objects, size, pending = share
        self.phases[phase] = self.phases.get(phase, 0) + sign
        for i, count in enumerate(counts):
            self.states[i] += sign * count
        self.objects += sign * objects
        self.bytes += sign * size
        self.pending += sign * pending


_totals = _Totals()


def observe(uid: str, status: WorkflowStatus | None) -> None:
    """Record one workflow's latest status (None when it is gone) and refresh the gauges."""
    share = None if status is None else _share(status)
    if _totals.shares.get(uid) == share:
        return
    _totals.update(uid, share)
    _publish()


def _publish() -> None:
    for phase, count in _totals.phases.items():
        WORKFLOWS.labels(phase).set(count)
    for state, count in zip(STATES, _totals.states, strict=True):
        PARTITIONS.labels(state).set(count)
    REPLICATED_OBJECTS.set(_totals.objects)
    REPLICATED_BYTES.set(_totals.bytes)
    REPLICATION_PENDING.set(_totals.pending)
