"""The words a workflow's status and Events use: condition types and reasons.

One vocabulary for the planner, the gate, the storage adapters, the CLI and the docs
(docs/reasons.md lists every member; a unit test keeps the two the same). Reasons that come
from elsewhere pass through as they are: a pod's (``FailedCreate``, ``Unschedulable``,
``ErrImagePull``...) from Kubernetes, an input's (``contract.InputReason``) from the partitioner.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    PARTITIONED = "Partitioned"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    BLOCKED = "Blocked"
    REPLICATED = "Replicated"
    REDUCED = "Reduced"
    REPLICATION_LATE = "ReplicationDeadlineExceeded"
    PODS_BLOCKED = "PodsBlocked"
    QUEUED = "Queued"


class Reason(StrEnum):
    # A condition that holds.
    PLAN_READ = "PlanRead"
    ALL_PARTITIONS_DONE = "AllPartitionsDone"
    REDUCE_SUCCEEDED = "ReduceSucceeded"
    ALL_REPLICATED = "AllReplicated"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    SUSPENDED = "Suspended"
    # Refusals of a spec before anything ran: a corrected spec (or a redrive) checks again.
    INVALID_SPEC = "InvalidSpec"
    DESTINATION_IS_OUTPUT = "DestinationIsOutput"
    JOB_REFUSED = "JobRefused"
    # What blocks a run until it is fixed; the operator retries by itself.
    SECRET_NOT_FOUND = "SecretNotFound"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    # Why a run failed.
    PARTITIONER_FAILED = "PartitionerFailed"
    PLAN_MISSING = "PlanMissing"
    INVALID_PLAN = "InvalidPlan"
    NO_PARTITIONS = "NoPartitions"
    FAILURE_TOLERANCE_EXCEEDED = "FailureToleranceExceeded"
    REDUCE_FAILED = "ReduceFailed"
    REDUCE_NOT_RECORDED = "ReduceNotRecorded"
    REPLICATION_FAILED = "ReplicationFailed"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    # Why child Jobs wait, suspended by the cluster's admission (Kueue), not by paraflow.
    AWAITING_ADMISSION = "AwaitingAdmission"
    SUSPENDED_WITHOUT_QUEUE = "SuspendedWithoutQueue"
    QUEUE_INADMISSIBLE = "QueueInadmissible"
    # Events only.
    PARTITIONED = "Partitioned"
    PARTITIONS_FAILED = "PartitionsFailed"
    REDUCED = "Reduced"
    REDUCE_ATTEMPT_FAILED = "ReduceAttemptFailed"
    REPLICAS_DELETED = "ReplicasDeleted"
    REPLICATION_DEADLINE_EXCEEDED = "ReplicationDeadlineExceeded"
    REPLICATION_MODE_CHANGED = "ReplicationModeChanged"
    LOGS_NOT_KEPT = "LogsNotKept"
    REDRIVEN = "Redriven"
    REDRIVE_IGNORED = "RedriveIgnored"
    RECHECKED = "Rechecked"
    # A schedule's Events.
    RUN_STARTED = "RunStarted"
    RUN_REPLACED = "RunReplaced"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    SLOTS_MISSED = "SlotsMissed"
    HOOK_FAILED = "HookFailed"
    INVALID_RUN = "InvalidRun"
    INVALID_SCHEDULE = "InvalidSchedule"
    RUN_NOT_CREATED = "RunNotCreated"


# Refusals: the spec is checked again once it changes, or on a redrive.
REFUSALS = frozenset({Reason.INVALID_SPEC, Reason.DESTINATION_IS_OUTPUT, Reason.JOB_REFUSED})
