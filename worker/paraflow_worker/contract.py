"""The contract between the operator and the pods it starts: env vars, object layout, schemas.

Versioned: ``PLAN_VERSION`` and ``MANIFEST_VERSION`` are written into every object, and a
reader refuses a version it does not know instead of guessing.

Object layout, all under the workflow's *run prefix* ``<output.prefix>_paraflow/<workflow uid>/``
in the output bucket::

    plan.json                            PlanSummary (written by the partitioner, last)
    partitions/<index>.json              PartitionItems: the input items of one partition
    results/p<index>/a<attempt>/s<shard>.json  ShardResult: what one shard wrote
    manifest.json                        ResultManifest (written by the operator at the end)
    results/reduce/a<attempt>.json       ReduceResult: what the reduce step wrote
    identity.json                        a random token: tells at run time whether a replication
                                         destination is this very storage under another name

Outputs of one attempt go under ``<output.prefix><workflow uid>/p<index>/a<attempt>/``, those of
the reduce step under ``<output.prefix><workflow uid>/reduce/a<attempt>/``. The run's
uid scopes them: two workflows sharing an output prefix (two namespaces, a re-created workflow)
never write the same key, so a manifest can only name bytes its own run wrote. Attempts never
share a key either, so a zombie pod of a superseded attempt cannot overwrite the winner's output,
and the manifest names exactly one attempt per partition.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")
PLAN_VERSION: Final = 1
MANIFEST_VERSION: Final = 1

# Hard limits a plan must respect. Indexed Jobs themselves allow 100,000 completions; one
# partition is one Job here, and the status index sets stay range-compressed at that size.
MAX_PARTITIONS: Final = 100_000
MAX_ITEMS_PER_PARTITION: Final = 100_000
MAX_SHARDS_PER_PARTITION: Final = 1_000


class Env:
    """Names of the env vars the operator sets on every pod it creates."""

    WORKFLOW: Final = "PARAFLOW_WORKFLOW"
    WORKFLOW_UID: Final = "PARAFLOW_WORKFLOW_UID"
    NAMESPACE: Final = "PARAFLOW_NAMESPACE"
    S3_ENDPOINT: Final = "PARAFLOW_S3_ENDPOINT"
    S3_ACCESS_KEY: Final = "PARAFLOW_S3_ACCESS_KEY"
    S3_SECRET_KEY: Final = "PARAFLOW_S3_SECRET_KEY"
    S3_REGION: Final = "PARAFLOW_S3_REGION"
    INPUT_BUCKET: Final = "PARAFLOW_INPUT_BUCKET"
    INPUT_PREFIX: Final = "PARAFLOW_INPUT_PREFIX"
    RUN_BUCKET: Final = "PARAFLOW_RUN_BUCKET"
    RUN_PREFIX: Final = "PARAFLOW_RUN_PREFIX"
    # text or json: how paraflow's own commands write their log lines (logs.configure).
    LOG_FORMAT: Final = "PARAFLOW_LOG_FORMAT"
    # Partitioner only.
    MAX_ITEMS: Final = "PARAFLOW_MAX_ITEMS_PER_PARTITION"
    MAX_BYTES: Final = "PARAFLOW_MAX_BYTES_PER_PARTITION"
    KEY_GLOB: Final = "PARAFLOW_KEY_GLOB"
    # A ReaderConfig as JSON: how items are read out of the input (objects, or records in them).
    READER: Final = "PARAFLOW_READER"
    # Partition pods only.
    PARTITION: Final = "PARAFLOW_PARTITION"
    ATTEMPT: Final = "PARAFLOW_ATTEMPT"
    SHARD_COUNT: Final = "PARAFLOW_SHARD_COUNT"
    OUTPUT_BUCKET: Final = "PARAFLOW_OUTPUT_BUCKET"
    OUTPUT_PREFIX: Final = "PARAFLOW_OUTPUT_PREFIX"
    # The reduce pod only: the key (in the run bucket) of the result manifest it reduces.
    MANIFEST: Final = "PARAFLOW_MANIFEST"
    # Replication Jobs only: a ReplicationTask as JSON, and per-destination credentials.
    REPLICATION: Final = "PARAFLOW_REPLICATION"
    # Tuning a user may set on a replication Job's pods (processes copying at once).
    REPLICATION_PROCESSES: Final = "PARAFLOW_REPLICATION_PROCESSES"
    # The demo processors' simulated work per item, for tests and benchmarks.
    DEMO_SLEEP: Final = "PARAFLOW_DEMO_SLEEP_SECONDS"
    # Set by the Job controller on every pod of an Indexed Job: the shard number.
    SHARD: Final = "JOB_COMPLETION_INDEX"


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


class ReaderConfig(_Strict):
    """How the built-in partitioner reads items (Step Functions' ItemReader and ReaderConfig)."""

    format: Literal["objects", "jsonl", "json", "csv"] = "objects"
    # One object holding the records (its key); empty: every object under the input prefix.
    key: str = Field(default="", max_length=1024)
    compression: Literal["auto", "none", "gzip"] = "auto"  # auto: gzip when the key ends in .gz
    csv_header: Literal["firstRow", "given"] = "firstRow"
    csv_columns: list[str] = Field(default_factory=list)
    csv_delimiter: str = Field(default=",", min_length=1, max_length=1)
    max_items: int = Field(default=0, ge=0)  # 0: every item
    # Items given in the workflow itself instead of read from storage.
    items: list[Any] | None = None
    # Handed to every shard with its items (Step Functions' ItemBatcher BatchInput).
    batch_input: dict[str, Any] | None = None


class Item(_Strict):
    key: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    etag: str = Field(default="", max_length=128)


class Record(_Strict):
    """One record of a record input: a parsed JSON value, or a CSV row as a dict."""

    index: int = Field(ge=0)  # position in the whole input ($$.Map.Item.Index)
    value: Any


class PartitionItems(_Strict):
    version: Literal[1] = PLAN_VERSION
    index: int = Field(ge=0, lt=MAX_PARTITIONS)
    kind: Literal["objects", "records"] = "objects"
    items: list[Item] = Field(default_factory=list, max_length=MAX_ITEMS_PER_PARTITION)
    records: list[Record] = Field(default_factory=list, max_length=MAX_ITEMS_PER_PARTITION)
    batch_input: dict[str, Any] | None = None


class InputReason(StrEnum):
    """Why an input cannot be partitioned: the reason the run fails with (docs/reasons.md)."""

    INPUT_NOT_READABLE = "InputNotReadable"
    NOT_GZIP = "NotGzip"
    INVALID_RECORD = "InvalidRecord"
    NOT_AN_ARRAY = "NotAnArray"
    RECORD_TOO_LARGE = "RecordTooLarge"
    TOO_MANY_PARTITIONS = "TooManyPartitions"


class PlanProblem(_Strict):
    """Why the input cannot be partitioned (a malformed record, a wrong format): final, not retried."""

    reason: InputReason
    message: str = Field(max_length=2048)


class PlanSummary(_Strict):
    """The object the operator reads: small whatever the input size."""

    version: Literal[1] = PLAN_VERSION
    partition_count: int = Field(alias="partitionCount", ge=0, le=MAX_PARTITIONS)
    item_count: int = Field(alias="itemCount", ge=0)
    total_bytes: int = Field(alias="totalBytes", ge=0)
    problem: PlanProblem | None = None


class OutputObject(_Strict):
    key: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    etag: str = Field(default="", max_length=128)
    version_id: str | None = Field(default=None)
    # Recorded at write time so replication needs no HEAD or tagging request per object.
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class ShardResult(_Strict):
    version: Literal[1] = MANIFEST_VERSION
    partition: int = Field(ge=0)
    attempt: int = Field(ge=1)
    shard: int = Field(ge=0)
    outputs: list[OutputObject]
    # Where the attempt wrote: an output's name is its key less this prefix. Empty in records
    # of an SDK older than run-scoped outputs.
    output_prefix: str = Field(default="", max_length=1024)
    # The key of the shard's emitted results (JSONL, one of ``outputs``), if it emitted any.
    results: str | None = Field(default=None, max_length=1024)

    def prefix(self, workflow_output_prefix: str, workflow_uid: str) -> str:
        """The recorded prefix; for an older SDK's record, the run-scoped layout its env gave it,
        or, for a run started before outputs were scoped by run, the layout it had then."""
        if self.output_prefix:
            return self.output_prefix
        scoped = attempt_output_prefix(workflow_output_prefix, workflow_uid, self.partition, attempt=self.attempt)
        if all(out.key.startswith(scoped) for out in self.outputs):
            return scoped
        return f"{workflow_output_prefix}p{self.partition}/a{self.attempt}/"


class ReduceResult(_Strict):
    """What the reduce step wrote: its outputs, replicated with the partitions' by the run-wide copy."""

    version: Literal[1] = MANIFEST_VERSION
    attempt: int = Field(ge=1)
    outputs: list[OutputObject]
    output_prefix: str = Field(max_length=1024)


class ManifestPartition(_Strict):
    index: int = Field(ge=0)
    attempt: int = Field(ge=1)
    results_prefix: str


class ResultManifest(_Strict):
    """Which attempt won each partition. Readers follow ``resultsPrefix`` to the outputs."""

    version: Literal[1] = MANIFEST_VERSION
    workflow: str
    # Two namespaces may each hold a workflow of one name over one output prefix: the uid tells
    # the runs apart, the namespace tells a person whose run it was.
    namespace: str = ""
    uid: str
    bucket: str
    succeeded: list[ManifestPartition]
    failed: list[int]


# Set on every replication pod: glibc's default of one malloc arena per thread lets the copy
# threads' freed part buffers pile up (peak RSS about 20 % higher in bench/replication).
REPLICATION_POD_ENV: Final = {"MALLOC_ARENA_MAX": "2"}


def destination_credential_env(index: int) -> tuple[str, str]:
    """Env var names holding destination ``index``'s access and secret key."""
    return f"PARAFLOW_DEST_{index}_ACCESS_KEY", f"PARAFLOW_DEST_{index}_SECRET_KEY"


class ReplicationTarget(_Strict):
    name: str = Field(min_length=1, max_length=63)
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = Field(default="", max_length=900)
    endpoint: str = Field(max_length=2048)
    region: str | None = None
    # Same server and same credentials as the source: copy server-side, no bytes through the pod.
    server_side: bool = False


class PartitionRef(_Strict):
    index: int = Field(ge=0)
    attempt: int = Field(ge=1)


class ReplicationTask(_Strict):
    """What one replication Job copies: the winning attempts of some partitions, to every target."""

    label: str = Field(min_length=1, max_length=63)
    # ``<namespace>/<name>`` of the workflow: replicas are marked with it, and deleteSync only
    # ever removes replicas carrying this workflow's mark for the same destination.
    workflow: str = Field(default="", max_length=317)
    run_uid: str = Field(default="", max_length=64)
    output_prefix: str = Field(max_length=900)
    # None: every partition the result manifest names (the run-wide copy of mode afterAll).
    partitions: list[PartitionRef] | None = Field(default=None, max_length=MAX_PARTITIONS)
    # The reduce step's winning attempt, whose outputs the run-wide copy also carries.
    reduce_attempt: int | None = Field(default=None, ge=1)
    targets: list[ReplicationTarget] = Field(min_length=1, max_length=8)
    filter_prefix: str = Field(default="", max_length=900)
    filter_tags: dict[str, str] = Field(default_factory=dict)
    verify: Literal["none", "size", "checksum", "fullRead"] = "checksum"
    delete_sync: bool = False
    concurrency: int = Field(default=32, ge=1, le=512)


class Failure(_Strict):
    key: str
    reason: str = Field(max_length=1024)


# A report lists the first failures only: the count says how many there were.
MAX_FAILURES_KEPT: Final = 100


class TargetReport(_Strict):
    name: str
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    deleted: int = 0
    bytes: int = 0
    failures: list[Failure] = Field(default_factory=list, max_length=MAX_FAILURES_KEPT)
    # deleteSync: every replica this pod deleted, by key (the count alone hides what went).
    deleted_keys: list[str] = Field(default_factory=list)


class ReplicationReport(_Strict):
    version: Literal[1] = MANIFEST_VERSION
    label: str
    shard: int = Field(ge=0)
    targets: list[TargetReport]


def replication_reports_prefix(run: str, label: str) -> str:
    """Where the pods of one replication Job (``label``) write their reports."""
    return f"{run}replication/{label}/"


def replication_report_key(run: str, label: str, shard: int) -> str:
    return f"{replication_reports_prefix(run, label)}s{shard}.json"


REDUCE_FOLDER: Final = "reduce"


def partition_folder(partition: int) -> str:
    return f"p{partition}"


def replica_key(target_prefix: str, folder: str, name: str) -> str:
    """Output ``stats.json`` of partition 3 -> ``<target prefix>p3/stats.json``, of the reduce step
    ``<target prefix>reduce/stats.json``: replicas carry neither the run nor the attempt, so a
    destination holds the latest copy of each output."""
    return f"{target_prefix}{folder}/{name}"


# User metadata on every replica (ASCII only: header values cannot carry arbitrary keys).
REPLICA_SHA256: Final = "paraflow-sha256"
REPLICA_WORKFLOW: Final = "paraflow-workflow"  # <namespace>/<name>
# The uid of the run whose copy wrote the replica's bytes: a later run (a re-created workflow's)
# that finds the same bytes there skips them and leaves this mark as it is.
REPLICA_RUN: Final = "paraflow-run"
REPLICA_DESTINATION: Final = "paraflow-destination"  # the destination's name in the spec


def runs_prefix(output_prefix: str) -> str:
    """Where every run's record folder under one output prefix lives."""
    return f"{output_prefix}_paraflow/"


def run_prefix(output_prefix: str, workflow_uid: str) -> str:
    return f"{runs_prefix(output_prefix)}{workflow_uid}/"


def logs_prefix(run: str) -> str:
    """Where the operator keeps the logs of a run's pods, one folder per Job."""
    return f"{run}logs/"


def pod_log_key(run: str, job: str, pod: str) -> str:
    return f"{logs_prefix(run)}{job}/{pod}.log"


def plan_key(run: str) -> str:
    return f"{run}plan.json"


def partitions_prefix(run: str) -> str:
    return f"{run}partitions/"


def partition_key(run: str, index: int) -> str:
    return f"{partitions_prefix(run)}{index}.json"


def results_prefix(run: str, partition: int, attempt: int) -> str:
    return f"{run}results/p{partition}/a{attempt}/"


def shard_result_key(run: str, partition: int, attempt: int, *, shard: int) -> str:
    return f"{results_prefix(run, partition, attempt)}s{shard}.json"


def reduce_result_key(run: str, attempt: int) -> str:
    return f"{run}results/{REDUCE_FOLDER}/a{attempt}.json"


def manifest_key(run: str) -> str:
    return f"{run}manifest.json"


def identity_key(run: str) -> str:
    return f"{run}identity.json"


def run_output_prefix(output_prefix: str, workflow_uid: str) -> str:
    return f"{output_prefix}{workflow_uid}/"


def attempt_output_prefix(output_prefix: str, workflow_uid: str, partition: int, *, attempt: int) -> str:
    return f"{run_output_prefix(output_prefix, workflow_uid)}{partition_folder(partition)}/a{attempt}/"


def reduce_output_prefix(output_prefix: str, workflow_uid: str, attempt: int) -> str:
    return f"{run_output_prefix(output_prefix, workflow_uid)}{REDUCE_FOLDER}/a{attempt}/"


MAX_KEY_BYTES: Final = 1024
MAX_SEGMENT_BYTES: Final = 255  # MinIO stores a key's segments as file names


def key_problem(key: str) -> str | None:
    """Why S3/MinIO would refuse ``key``, or None. The checks MinIO makes (object-api-utils.go):
    valid UTF-8, at most 1,024 bytes, no leading '/', no empty segment, no NUL, no '.' or '..'
    segment (split on '/' and '\\', blanks trimmed), segments of at most 255 bytes."""
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if size > MAX_KEY_BYTES:
        return f"it is {size} bytes, more than S3's {MAX_KEY_BYTES}"
    if key.startswith("/") or "//" in key:
        return "it has an empty path segment ('/' at the start or '//')"
    if "\x00" in key:
        return "it contains a NUL character"
    if any(segment.strip() in (".", "..") for segment in key.replace("\\", "/").split("/")):
        return "it has a '.' or '..' path segment"
    if any(len(segment.encode()) > MAX_SEGMENT_BYTES for segment in key.split("/")):
        return f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def results_name(shard: int) -> str:
    """The output (under the attempt's prefix) holding one shard's emitted results, as JSONL."""
    return f"results-s{shard}.jsonl"


def shard_slice(items: list[T], shard: int, shard_count: int) -> list[T]:
    """Shard k of n takes every n-th item from k: balanced, and every item in exactly one shard."""
    return items[shard::shard_count]
