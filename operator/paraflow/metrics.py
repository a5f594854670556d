"""Prometheus metrics. Gauges are recomputed from each workflow's last written status, so they
are right after a restart too; counters count what this process did."""

from __future__ import annotations

import logging
from typing import get_args

from prometheus_client import Counter, Gauge, start_http_server

from paraflow.models import Phase, WorkflowStatus

WORKFLOWS = Gauge("paraflow_workflows", "Workflows by phase", ["phase"])
PARTITIONS = Gauge("paraflow_partitions", "Partitions of all workflows by state", ["state"])
REPLICATED_OBJECTS = Gauge("paraflow_replicated_objects", "Objects copied by replication, all workflows")
REPLICATED_BYTES = Gauge("paraflow_replicated_bytes", "Bytes copied by replication, all workflows")
JOBS_CREATED = Counter("paraflow_jobs_created_total", "Jobs created", ["role"])
JOBS_DELETED = Counter("paraflow_jobs_deleted_total", "Succeeded partition Jobs deleted (succeededJobs: Delete)")
JOBS_ALREADY_EXISTED = Counter("paraflow_job_create_conflicts_total", "Job creates answered 409: it existed", ["role"])
API_ERRORS = Counter("paraflow_reconcile_errors_total", "Reconcile passes that raised", ["kind"])
PASSES = Counter("paraflow_reconcile_passes_total", "Reconcile passes run")
LEADER = Gauge("paraflow_leader", "1 while this replica holds the Lease and runs passes, else 0")
API_WRITES = Counter("paraflow_api_writes_total", "Writes sent to the apiserver (Events excluded)", ["verb"])

log = logging.getLogger(__name__)
_statuses: dict[str, WorkflowStatus] = {}


def observe(uid: str, status: WorkflowStatus | None) -> None:
    """Record one workflow's latest status (None when it is gone) and refresh the gauges."""
    if status is None:
        _statuses.pop(uid, None)
    else:
        _statuses[uid] = status
    phases: dict[str, int] = {}
    states = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0}
    objects = size = 0
    for st in _statuses.values():
        phases[st.phase] = phases.get(st.phase, 0) + 1
        for state in states:
            states[state] += getattr(st.partitions, state)
        if st.replication is not None:
            objects += st.replication.objects
            size += st.replication.bytes
    for phase in get_args(Phase):
        WORKFLOWS.labels(phase).set(phases.get(phase, 0))
    for state, count in states.items():
        PARTITIONS.labels(state).set(count)
    REPLICATED_OBJECTS.set(objects)
    REPLICATED_BYTES.set(size)


def serve(port: int) -> None:
    """Metrics are for watching the operator, never a reason to stop it: a port already taken
    (two replicas sharing a host network) is logged and the operator runs on without them."""
    if not port:
        return
    try:
        start_http_server(port)
    except OSError as e:
        log.error("metrics not served: port %d: %s", port, e)
