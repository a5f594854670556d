"""Pure builders: workflow spec in, Job manifests (plain dicts) out; and Job dict -> JobFacts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paraflow import constants as c
from paraflow.k8s import names, podmerge
from paraflow.models import ContainerSpec, SecuritySpec, WorkflowSpec, parse_bytes, parse_time
from paraflow.planning.actions import Create, CreatePartition, CreateReduce, CreateReplication
from paraflow.planning.tracking import JobFacts, JobState
from paraflow.pod_template import PodTemplate
from paraflow.settings import Settings
from paraflow_worker import contract
from paraflow_worker.contract import Env

PROCESSOR_CONTAINER = "processor"
REDUCE_CONTAINER = "reduce"
PARTITIONER_CONTAINER = "partitioner"
REPLICATION_CONTAINER = "replicate"
OWN_CONTAINERS = frozenset({PROCESSOR_CONTAINER, REDUCE_CONTAINER, PARTITIONER_CONTAINER, REPLICATION_CONTAINER})
# The Job controller's reason on a Job failed by a podFailurePolicy FailJob rule.
REASON_POD_FAILURE_POLICY = "PodFailurePolicy"


@dataclass(frozen=True)
class WorkflowRef:
    name: str
    namespace: str
    uid: str


def labels(wf: WorkflowRef, role: str, **extra: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "paraflow",
        c.LABEL_WORKFLOW: wf.name,
        c.LABEL_WORKFLOW_UID: wf.uid,
        c.LABEL_ROLE: role,
        **extra,
    }


def queue_labels(spec: WorkflowSpec) -> dict[str, str]:
    """Kueue's labels, on the Jobs only: Kueue admits Jobs; a pod with them would be a Workload of
    its own to Kueue's pod integration."""
    found = {}
    if spec.queue_name:
        found[c.LABEL_KUEUE_QUEUE] = spec.queue_name
    if spec.queue_priority_class:
        found[c.LABEL_KUEUE_PRIORITY] = spec.queue_priority_class
    return found


def owner_reference(wf: WorkflowRef) -> dict[str, Any]:
    return {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": c.KIND,
        "name": wf.name,
        "uid": wf.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def common_env(wf: WorkflowRef, spec: WorkflowSpec) -> list[dict[str, Any]]:
    run = contract.run_prefix(spec.output.prefix, wf.uid)
    env = [
        {"name": Env.WORKFLOW, "value": wf.name},
        {"name": Env.WORKFLOW_UID, "value": wf.uid},
        {"name": Env.NAMESPACE, "value": wf.namespace},
        {"name": Env.S3_ENDPOINT, "value": spec.storage.endpoint},
        _secret_env(Env.S3_ACCESS_KEY, spec.storage.credentials_secret, "accessKey"),
        _secret_env(Env.S3_SECRET_KEY, spec.storage.credentials_secret, "secretKey"),
        {"name": Env.INPUT_BUCKET, "value": spec.input.bucket},
        {"name": Env.INPUT_PREFIX, "value": spec.input.prefix},
        {"name": Env.RUN_BUCKET, "value": spec.output.bucket},
        {"name": Env.RUN_PREFIX, "value": run},
    ]
    if spec.storage.region:
        env.append({"name": Env.S3_REGION, "value": spec.storage.region})
    return env


def pod_security(security: SecuritySpec) -> dict[str, Any]:
    """Pod-level settings; with :func:`container_security`, what Pod Security ``restricted`` asks."""
    pod: dict[str, Any] = {
        "runAsNonRoot": security.run_as_non_root,
        "runAsUser": security.run_as_user,
        "runAsGroup": security.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if security.fs_group is not None:
        pod["fsGroup"] = security.fs_group
    return pod


def container_security(security: SecuritySpec) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": security.read_only_root_filesystem,
    }


def _container(
    name: str,
    image: str,
    spec: ContainerSpec | None,
    *,
    env: list[dict[str, Any]],
    settings: Settings,
    args: list[str] | None = None,
) -> dict[str, Any]:
    user_env = [{"name": e.name, "value": e.value} for e in spec.env] if spec else []
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": settings.worker_image_pull_policy,
        # User variables first: ours come later and win, so a user cannot break the contract.
        "env": [*user_env, *env],
        # paraflow's own image needs nothing but its non-root user: the defaults fit it exactly.
        "securityContext": container_security(spec.security_context if spec else SecuritySpec()),
    }
    if spec is not None:
        if spec.command:
            body["command"] = list(spec.command)
        if spec.args:
            body["args"] = list(spec.args)
        resources = spec.resources.model_dump(exclude_defaults=True)
        if resources:
            body["resources"] = resources
    elif args:
        # paraflow's own commands (partitioner, replication) log as the operator is told to.
        body["args"] = args
        body["env"].append({"name": Env.LOG_FORMAT, "value": settings.worker_log_format})
    return body


def _job(
    wf: WorkflowRef,
    name: str,
    job_labels: dict[str, str],
    *,
    spec: dict[str, Any],
    pod_spec: dict[str, Any],
    queue: Mapping[str, str],
    security: SecuritySpec | None = None,
    template: PodTemplate | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    pod_meta: dict[str, Any] = {"labels": job_labels}
    if annotations:
        pod_meta["annotations"] = dict(annotations)
    ours = {
        "restartPolicy": "Never",
        "securityContext": pod_security(security or SecuritySpec()),
        **pod_spec,
    }
    pod_meta, merged = podmerge.merge(
        template, metadata=pod_meta, spec=ours, container=pod_spec["containers"][0]["name"]
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": wf.namespace,
            "labels": {**job_labels, **queue},
            "ownerReferences": [owner_reference(wf)],
        },
        "spec": {**spec, "template": {"metadata": pod_meta, "spec": merged}},
    }


def reader_config(spec: WorkflowSpec) -> contract.ReaderConfig:
    """What the built-in partitioner is told about reading the input (env PARAFLOW_READER)."""
    reader, builtin = spec.input.reader, spec.partitioner.builtin
    return contract.ReaderConfig(
        format=reader.format,
        key=reader.key,
        compression=reader.compression,
        csv_header=reader.csv.header_location,
        csv_columns=reader.csv.headers,
        csv_delimiter=reader.csv.delimiter,
        max_items=reader.max_items,
        items=spec.input.items,
        batch_input=builtin.batch_input if builtin is not None else None,
    )


def partitioner_job(wf: WorkflowRef, spec: WorkflowSpec, attempt: int, *, settings: Settings) -> dict[str, Any]:
    env = common_env(wf, spec)
    builtin = spec.partitioner.builtin
    if builtin is not None:
        env += [
            {"name": Env.MAX_ITEMS, "value": str(builtin.max_items_per_partition)},
            {"name": Env.MAX_BYTES, "value": str(parse_bytes(builtin.max_bytes_per_partition))},
            {"name": Env.KEY_GLOB, "value": builtin.key_glob},
            {"name": Env.READER, "value": reader_config(spec).model_dump_json(exclude_defaults=True)},
        ]
        container = _container(
            PARTITIONER_CONTAINER, settings.worker_image, None, env=env, settings=settings, args=["partition"]
        )
    else:
        user = spec.partitioner.container
        assert user is not None  # the model guarantees exactly one of builtin/container
        container = _container(PARTITIONER_CONTAINER, user.image, user, env=env, settings=settings)
    job_labels = labels(wf, c.ROLE_PARTITIONER, **{c.LABEL_ATTEMPT: str(attempt)})
    job_spec = {
        "backoffLimit": spec.retry.max_attempts - 1,
        "podReplacementPolicy": "Failed",
        # A partitioner whose pods can never start (or that hangs) must end, and fail the run.
        "activeDeadlineSeconds": spec.partitioner.active_deadline_seconds,
    }
    # Processor placement (nodeSelector, tolerations) is for the fan-out only: the partitioner
    # lists a bucket and runs wherever the cluster puts it.
    pod: dict[str, Any] = {"containers": [container]}
    security = spec.partitioner.container.security_context if spec.partitioner.container else None
    return _job(
        wf,
        names.partitioner_job(wf.name, attempt),
        job_labels,
        spec=job_spec,
        pod_spec=pod,
        queue=queue_labels(spec),
        security=security,
        template=spec.partitioner.pod_template,
    )


def partition_job(
    wf: WorkflowRef, spec: WorkflowSpec, partition: int, *, attempt: int, settings: Settings
) -> dict[str, Any]:
    proc = spec.processor
    env = [
        *common_env(wf, spec),
        {"name": Env.PARTITION, "value": str(partition)},
        {"name": Env.ATTEMPT, "value": str(attempt)},
        {"name": Env.SHARD_COUNT, "value": str(proc.shards_per_partition)},
        {"name": Env.OUTPUT_BUCKET, "value": spec.output.bucket},
        {
            "name": Env.OUTPUT_PREFIX,
            "value": contract.attempt_output_prefix(spec.output.prefix, wf.uid, partition, attempt=attempt),
        },
    ]
    rules: list[dict[str, Any]] = [
        # Evictions and preemptions are the cluster's doing, not the processor's: not counted.
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
    if proc.non_retryable_exit_codes:
        # FailJob, not FailIndex: the Job's Failed condition then says PodFailurePolicy, which is
        # how the operator knows not to start another attempt (one failed shard fails the
        # attempt either way, with maxFailedIndexes 0).
        rules.append(
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": PROCESSOR_CONTAINER,
                    "operator": "In",
                    "values": sorted(set(proc.non_retryable_exit_codes)),
                },
            }
        )
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": proc.shards_per_partition,
        "parallelism": proc.shards_per_partition,
        "backoffLimitPerIndex": proc.backoff_limit_per_index,
        # One failed shard fails the attempt at once; the operator's retry takes it from there.
        "maxFailedIndexes": 0,
        "podFailurePolicy": {"rules": rules},
        "podReplacementPolicy": "Failed",
    }
    if proc.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = proc.active_deadline_seconds
    job_labels = labels(wf, c.ROLE_PARTITION, **{c.LABEL_PARTITION: str(partition), c.LABEL_ATTEMPT: str(attempt)})
    pod: dict[str, Any] = {
        "containers": [_container(PROCESSOR_CONTAINER, proc.image, proc, env=env, settings=settings)]
    }
    _placement(pod, spec, template=proc.pod_template)
    return _job(
        wf,
        names.partition_job(wf.name, partition, attempt),
        job_labels,
        spec=job_spec,
        pod_spec=pod,
        queue=queue_labels(spec),
        security=proc.security_context,
        template=proc.pod_template,
        annotations=proc.pod_annotations,
    )


def reduce_job(wf: WorkflowRef, spec: WorkflowSpec, attempt: int, *, settings: Settings) -> dict[str, Any]:
    """One pod, after the map: reads the result manifest, writes under its attempt's own prefix."""
    reduce = spec.reduce
    assert reduce is not None  # only planned when spec.reduce is set
    run = contract.run_prefix(spec.output.prefix, wf.uid)
    env = [
        *common_env(wf, spec),
        {"name": Env.ATTEMPT, "value": str(attempt)},
        {"name": Env.MANIFEST, "value": contract.manifest_key(run)},
        {"name": Env.OUTPUT_BUCKET, "value": spec.output.bucket},
        {"name": Env.OUTPUT_PREFIX, "value": contract.reduce_output_prefix(spec.output.prefix, wf.uid, attempt)},
    ]
    job_spec: dict[str, Any] = {
        # Retries are the operator's, as new attempts with their own prefix: a pod retried inside
        # the Job would write where a zombie of the first pod may still write.
        "backoffLimit": 0,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
        "activeDeadlineSeconds": reduce.active_deadline_seconds,
    }
    pod: dict[str, Any] = {
        "containers": [_container(REDUCE_CONTAINER, reduce.image, reduce, env=env, settings=settings)]
    }
    _placement(pod, spec, template=reduce.pod_template)
    job_labels = labels(wf, c.ROLE_REDUCE, **{c.LABEL_ATTEMPT: str(attempt)})
    return _job(
        wf,
        names.reduce_job(wf.name, attempt),
        job_labels,
        spec=job_spec,
        pod_spec=pod,
        queue=queue_labels(spec),
        security=reduce.security_context,
        template=reduce.pod_template,
    )


def replication_task(
    wf: WorkflowRef,
    spec: WorkflowSpec,
    partition: int | None,
    *,
    winner: int,
    label: str,
    reduce_attempt: int | None = None,
) -> contract.ReplicationTask:
    rspec = spec.replication
    assert rspec is not None  # only planned when spec.replication is set
    targets = []
    for d in rspec.destinations:
        storage = d.storage or spec.storage
        same = (
            storage.endpoint == spec.storage.endpoint and storage.credentials_secret == spec.storage.credentials_secret
        )
        targets.append(
            contract.ReplicationTarget(
                name=d.name,
                bucket=d.bucket,
                prefix=d.prefix,
                endpoint=storage.endpoint,
                region=storage.region,
                server_side=same,
            )
        )
    partitions = None if partition is None else [contract.PartitionRef(index=partition, attempt=winner)]
    return contract.ReplicationTask(
        label=label,
        workflow=f"{wf.namespace}/{wf.name}",
        run_uid=wf.uid,
        output_prefix=spec.output.prefix,
        partitions=partitions,
        reduce_attempt=reduce_attempt,
        targets=targets,
        filter_prefix=rspec.filter.prefix,
        filter_tags=dict(rspec.filter.tags),
        verify=rspec.verify,
        delete_sync=rspec.delete_sync,
        concurrency=rspec.concurrency,
    )


def replication_job(
    wf: WorkflowRef,
    spec: WorkflowSpec,
    partition: int | None,
    *,
    attempt: int,
    winner: int,
    settings: Settings,
    reduce_attempt: int | None = None,
) -> dict[str, Any]:
    """Copies one partition's winning outputs (``partition``), or the whole run's (None) with the
    reduce step's (``reduce_attempt``, its winning attempt)."""
    rspec = spec.replication
    assert rspec is not None
    name = names.replication_job(wf.name, partition, attempt)
    task = replication_task(wf, spec, partition, winner=winner, label=name, reduce_attempt=reduce_attempt)
    shards = 1 if partition is not None else rspec.shards
    env = [
        *common_env(wf, spec),
        {"name": Env.REPLICATION, "value": task.model_dump_json(exclude_none=True)},
        {"name": Env.SHARD_COUNT, "value": str(shards)},
        *({"name": k, "value": v} for k, v in contract.REPLICATION_POD_ENV.items()),
    ]
    for i, d in enumerate(rspec.destinations):
        secret = (d.storage or spec.storage).credentials_secret
        access, secret_key = contract.destination_credential_env(i)
        env += [_secret_env(access, secret, "accessKey"), _secret_env(secret_key, secret, "secretKey")]
    extra = {c.LABEL_ATTEMPT: str(attempt)}
    if partition is not None:
        extra[c.LABEL_PARTITION] = str(partition)
    role = c.ROLE_REPLICATION if partition is not None else c.ROLE_REPLICATION_ALL
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": shards,
        "parallelism": shards,
        "backoffLimitPerIndex": 0,
        "maxFailedIndexes": 0,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
    }
    if rspec.deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = rspec.deadline_seconds
    container = _container(
        REPLICATION_CONTAINER, settings.worker_image, None, env=env, settings=settings, args=["replicate"]
    )
    return _job(
        wf,
        name,
        labels(wf, role, **extra),
        spec=job_spec,
        pod_spec={"containers": [container]},
        queue=queue_labels(spec),
    )


def _placement(pod: dict[str, Any], spec: WorkflowSpec, *, template: PodTemplate | None) -> None:
    """The processor's placement fields, except where the step's own template places its pods
    (the reduce step's may; the processor's cannot, its admission rules refuse both)."""
    proc, theirs = spec.processor, template.spec if template else {}
    if proc.node_selector and "nodeSelector" not in theirs:
        pod["nodeSelector"] = dict(proc.node_selector)
    if proc.tolerations and "tolerations" not in theirs:
        pod["tolerations"] = [t.model_dump(exclude_defaults=True) for t in proc.tolerations]
    if proc.service_account_name and "serviceAccountName" not in theirs:
        pod["serviceAccountName"] = proc.service_account_name


def child_job(
    wf: WorkflowRef,
    spec: WorkflowSpec,
    action: Create,
    *,
    partitioner_attempt: int,
    settings: Settings,
) -> dict[str, Any]:
    """The Job one of the plan's creates names."""
    if isinstance(action, CreatePartition):
        return partition_job(wf, spec, action.index, attempt=action.attempt, settings=settings)
    if isinstance(action, CreateReduce):
        return reduce_job(wf, spec, action.attempt, settings=settings)
    if isinstance(action, CreateReplication):
        whole_run = spec.replication is not None and spec.replication.mode == "afterAll"
        partition = None if whole_run else action.index
        return replication_job(
            wf,
            spec,
            partition,
            attempt=action.attempt,
            winner=action.winner,
            settings=settings,
            reduce_attempt=action.reduce_attempt,
        )
    return partitioner_job(wf, spec, partitioner_attempt, settings=settings)


def job_facts(job: Mapping[str, Any]) -> JobFacts | None:
    """What the planner needs of a Job; None for a Job without our labels (not ours to judge)."""
    meta = job.get("metadata", {})
    job_labels = meta.get("labels", {}) or {}
    role = job_labels.get(c.LABEL_ROLE)
    try:
        attempt = int(job_labels.get(c.LABEL_ATTEMPT, ""))
        has_partition = role in (c.ROLE_PARTITION, c.ROLE_REPLICATION)
        partition = int(job_labels[c.LABEL_PARTITION]) if has_partition else None
    except (KeyError, ValueError):
        return None
    if role not in (c.ROLE_PARTITION, c.ROLE_PARTITIONER, c.ROLE_REDUCE, c.ROLE_REPLICATION, c.ROLE_REPLICATION_ALL):
        return None
    state, finished, message, retryable = JobState.ACTIVE, None, "", True
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True" or cond.get("type") not in ("Complete", "Failed"):
            continue
        state = JobState.SUCCEEDED if cond["type"] == "Complete" else JobState.FAILED
        finished = parse_time(cond.get("lastTransitionTime"))
        message = f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
        retryable = not (state is JobState.FAILED and cond.get("reason") == REASON_POD_FAILURE_POLICY)
    # paraflow never suspends a Job: a suspended one waits for the cluster's admission (Kueue),
    # or was preempted back into its queue. No pod is meant to run: not a stall.
    queued = state is JobState.ACTIVE and bool((job.get("spec") or {}).get("suspend"))
    # No pod of it exists, or none of its pods runs yet: worth asking why, once it lasts.
    started = sum(int(status.get(k) or 0) for k in ("ready", "succeeded", "failed"))
    return JobFacts(
        name=meta.get("name", ""),
        role=role,
        partition=partition,
        attempt=attempt,
        state=state,
        finished_at=finished,
        message=message,
        retryable=retryable,
        # The Job controller sets startTime when the Job starts and again when Kueue resumes it:
        # hours spent queued are no wait for a pod.
        created_at=parse_time(status.get("startTime")) or parse_time(meta.get("creationTimestamp")),
        stalled=state is JobState.ACTIVE and started == 0 and not queued,
        queued=queued,
        uid=meta.get("uid", ""),
    )
