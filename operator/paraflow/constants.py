"""Names shared by the operator's modules: API coordinates, labels, annotations, conditions."""

from __future__ import annotations

from typing import Final

GROUP: Final = "paraflow.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "ParallelWorkflow"
PLURAL: Final = "parallelworkflows"
SINGULAR: Final = "parallelworkflow"
SHORT_NAMES: Final = ("pwf",)

SCHEDULE_KIND: Final = "ParallelWorkflowSchedule"
SCHEDULE_PLURAL: Final = "parallelworkflowschedules"
SCHEDULE_SINGULAR: Final = "parallelworkflowschedule"
SCHEDULE_SHORT_NAMES: Final = ("pwfs",)

# Child names embed the workflow name; 40 characters keep `<wf>-p<index>-a<attempt>` and its
# pods' hostnames under the 63-character DNS label limit with no truncation or hashing.
MAX_WORKFLOW_NAME: Final = 40
# A run is "<schedule>-<slot in minutes since the epoch>" (8 digits until the year 2160).
MAX_SCHEDULE_NAME: Final = MAX_WORKFLOW_NAME - 9

# Labels on every child object.
LABEL_WORKFLOW: Final = f"{GROUP}/workflow"  # the workflow's name
LABEL_WORKFLOW_UID: Final = f"{GROUP}/workflow-uid"  # what the operator's Job index keys on
LABEL_ROLE: Final = f"{GROUP}/role"  # partitioner | partition
LABEL_PARTITION: Final = f"{GROUP}/partition"
LABEL_ATTEMPT: Final = f"{GROUP}/attempt"
# Kueue's: on a Job, the LocalQueue it is admitted through and its WorkloadPriorityClass.
LABEL_KUEUE_QUEUE: Final = "kueue.x-k8s.io/queue-name"
LABEL_KUEUE_PRIORITY: Final = "kueue.x-k8s.io/priority-class"
LABEL_KUEUE_JOB_UID: Final = "kueue.x-k8s.io/job-uid"  # on the Workload Kueue makes of a Job
KUEUE_GROUP: Final = "kueue.x-k8s.io"
KUEUE_VERSION: Final = "v1beta2"
ROLE_PARTITIONER: Final = "partitioner"
ROLE_PARTITION: Final = "partition"
ROLE_REPLICATION: Final = "replication"  # one partition's outputs (mode perPartition)
ROLE_REPLICATION_ALL: Final = "replication-all"  # the whole run's outputs (mode afterAll)
ROLE_REDUCE: Final = "reduce"  # the optional step after the map

# On a schedule's runs: the schedule's name and uid, and the slot (RFC 3339) the run is for.
LABEL_SCHEDULE: Final = f"{GROUP}/schedule"
LABEL_SCHEDULE_UID: Final = f"{GROUP}/schedule-uid"
ANNOTATION_SLOT: Final = f"{GROUP}/scheduled-time"
# Set on a run once its schedule told of its end (Event, metric, webhook): "Delivered",
# "Failed" (the webhook's attempts all failed) or "NoHook".
ANNOTATION_REPORTED: Final = f"{GROUP}/reported"

# Setting this annotation to a new value re-runs the failed partitions of a finished workflow.
ANNOTATION_REDRIVE: Final = f"{GROUP}/redrive"


# The operator's HTTP user agent is "<this>/<version>".
USER_AGENT_PRODUCT = "paraflow-operator"
