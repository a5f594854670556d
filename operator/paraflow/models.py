"""The ParallelWorkflow API as pydantic models. The CRD schema is generated from these
(``python -m paraflow.crdgen``), so the apiserver and the operator validate the same rules:
bounds here become OpenAPI bounds there, and ``x-kubernetes-validations`` carry the CEL rules
that need more than one field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from paraflow import constants as c
from paraflow.apimodel import ApiModel
from paraflow.pod_template import PARTITIONER, PROCESSOR, REDUCE, PodTemplate, Step, cel_rules, refusals
from paraflow_worker import contract

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# S3 bucket naming rules (lowercase, digits, dots, hyphens; 3-63; starts and ends alphanumeric).
BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# Inline items stay small: the workflow object must stay far below etcd's 1.5 MiB, and they reach
# the partitioner through one env var (Linux caps one at 128 KiB).
MAX_INLINE_ITEMS = 1000
MAX_INLINE_BYTES = 64 * 1024
# batchInput goes to the partitioner in the same env var, and into every partition document.
MAX_BATCH_INPUT_BYTES = 16 * 1024
# Key prefixes: no control characters or backslashes; no leading '/' and no '.'/'..' segments
# (checked separately: neither Go's nor Rust's regex engine has look-ahead).
PREFIX_CHARS = r"^[^\x00-\x1f\x7f\\]*$"
DOT_SEGMENT = r"(^|/)[.]{1,2}(/|$)"
# An annotation (or label) key: an optional DNS-subdomain prefix and '/', then a name.
QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
QUANTITY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def parse_bytes(value: int | str) -> int:
    """A Kubernetes-style byte quantity (``2Gi``, ``500M``, ``1048576``) as an integer."""
    if isinstance(value, int):
        return value
    m = QUANTITY.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a byte quantity such as 512Mi, 2Gi or 1000000")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _utc_seconds(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("a timestamp needs its time zone (RFC 3339)")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def parse_time(value: str | None) -> dt.datetime | None:
    """A timestamp as Kubernetes writes it (RFC 3339, ``Z`` for UTC); None for none."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


# A datetime in code; at the API edge RFC 3339 in UTC to the second, as Kubernetes writes its own.
Timestamp = Annotated[
    dt.datetime,
    AfterValidator(_utc_seconds),
    PlainSerializer(lambda v: v.strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str, when_used="json"),
]

ShortStr = Annotated[str, Field(max_length=253)]
Arg = Annotated[str, Field(max_length=4096)]
ResourceMap = Annotated[dict[str, Annotated[str, Field(max_length=64)]], Field(json_schema_extra={"maxProperties": 16})]


class StorageSpec(ApiModel):
    """Where the buckets live, and the Secret (keys accessKey, secretKey) to reach them."""

    endpoint: str = Field(
        max_length=2048,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        description="S3/MinIO endpoint URL, e.g. http://minio.minio.svc:9000",
    )
    credentials_secret: str = Field(
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Secret in the workflow's namespace with keys accessKey and secretKey",
    )
    region: str | None = Field(default=None, max_length=64, description="S3 region, if the server needs one")


PREFIX_RULES: list[JsonValue] = [
    {"rule": "!self.prefix.startsWith('/')", "message": "prefix must not start with '/'", "fieldPath": ".prefix"},
    {
        "rule": f"!self.prefix.matches('{DOT_SEGMENT}')",
        "message": "prefix must not contain '.' or '..' segments",
        "fieldPath": ".prefix",
    },
]


class Location(ApiModel):
    """A bucket and a key prefix in it."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": PREFIX_RULES})
    bucket: str = Field(min_length=3, max_length=63, pattern=BUCKET, description="Bucket name (S3 naming rules)")
    prefix: str = Field(
        default="",
        max_length=900,
        pattern=PREFIX_CHARS,
        description="Key prefix; '' is the whole bucket. No leading '/', no '.' or '..' segments",
    )

    @field_validator("prefix")
    @classmethod
    def _safe_prefix(cls, v: str) -> str:
        if v.startswith("/"):
            raise ValueError("prefix must not start with '/'")
        if re.search(DOT_SEGMENT, v):
            raise ValueError("prefix must not contain '.' or '..' segments")
        return v


class CsvSpec(ApiModel):
    """How CSV records are read (Step Functions' CSVHeaderLocation, CSVHeaders, CSVDelimiter)."""

    header_location: Literal["firstRow", "given"] = Field(
        default="firstRow", description="firstRow: the first row names the columns; given: headers does"
    )
    headers: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=1000, description="Column names, with headerLocation: given"
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="One character")

    @model_validator(mode="after")
    def _headers_given(self) -> CsvSpec:
        if self.header_location == "given" and not self.headers:
            raise ValueError("csv.headers must name the columns when csv.headerLocation is given")
        return self


class ReaderSpec(ApiModel):
    """Which items the Map runs over (Step Functions' ItemReader): the objects under the prefix,
    or the records inside them."""

    format: Literal["objects", "jsonl", "json", "csv"] = Field(
        default="objects",
        description="objects: one item per object; jsonl: one per line; json: one per element of a top-level "
        "array; csv: one per row, as a dict of its columns",
    )
    key: str = Field(
        default="",
        max_length=1024,
        pattern=PREFIX_CHARS,
        description="The one object holding the records (a key in the bucket); empty: every object under the prefix",
    )
    compression: Literal["auto", "none", "gzip"] = Field(
        default="auto", description="auto: gzip when the key ends in .gz"
    )
    csv: CsvSpec = Field(default_factory=CsvSpec, description="format: csv only")
    max_items: int = Field(
        default=0, ge=0, le=100_000_000, description="Read at most this many items (0: all), to try a big input"
    )

    @model_validator(mode="after")
    def _key_for_records(self) -> ReaderSpec:
        if self.format == "objects" and self.key:
            raise ValueError("reader.key names an object of records: it needs format jsonl, json or csv")
        return self


class InputSpec(Location):
    """What the Map runs over: objects (or records in them) under a prefix, or items given here."""

    # No CEL rule for "bucket or items": CEL cannot see a field of untyped JSON values, so the
    # operator refuses such a spec (InvalidSpec), as `paraflow validate` does before submitting.
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": PREFIX_RULES})
    bucket: str = Field(
        default="", max_length=63, pattern=f"^$|{BUCKET}", description="Bucket name; empty with inline items"
    )
    reader: ReaderSpec = Field(default_factory=ReaderSpec, description="How items are read from the bucket")
    items: list[Any] | None = Field(
        default=None,
        max_length=MAX_INLINE_ITEMS,
        description=f"Items given here, any JSON values, for small lists: at most {MAX_INLINE_ITEMS} items and "
        f"{MAX_INLINE_BYTES // 1024} KiB as JSON (larger inputs belong in a bucket)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if (self.items is None) == (self.bucket == ""):
            raise ValueError("set either input.bucket (read from storage) or input.items (given here), not both")
        if self.items is not None and len(json.dumps(self.items)) > MAX_INLINE_BYTES:
            raise ValueError(
                f"input.items is {len(json.dumps(self.items))} bytes as JSON, more than {MAX_INLINE_BYTES}: "
                "put the items in an object and read it with input.reader"
            )
        return self


class EnvVar(ApiModel):
    name: str = Field(
        min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name"
    )
    value: str = Field(default="", max_length=32768, description="Its value")


class Resources(ApiModel):
    requests: ResourceMap = Field(default_factory=dict, description="e.g. cpu: 500m, memory: 512Mi")
    limits: ResourceMap = Field(default_factory=dict, description="e.g. memory: 1Gi")


ROOT_NEEDS_OPT_IN = "runAsUser 0 is root: set runAsNonRoot to false as well (restricted namespaces refuse it)"
UID = 65532  # the non-root user of paraflow's own images, and of user containers by default


class SecuritySpec(ApiModel):
    """Who the container runs as. Every pod paraflow creates also drops all capabilities, forbids
    privilege escalation and uses the RuntimeDefault seccomp profile, so the defaults pass Pod
    Security ``restricted``. Set ``runAsUser`` to your image's user if it needs its own; running
    as root needs ``runAsUser: 0`` and ``runAsNonRoot: false``, and a namespace that allows it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.runAsNonRoot || self.runAsUser != 0",
                    "message": ROOT_NEEDS_OPT_IN,
                    "fieldPath": ".runAsUser",
                },
            ]
        }
    )
    run_as_user: int = Field(default=UID, ge=0, le=2**31 - 1, description="UID the container runs as")
    run_as_group: int = Field(default=UID, ge=0, le=2**31 - 1, description="Primary GID of the container")
    fs_group: int | None = Field(default=None, ge=0, le=2**31 - 1, description="GID owning mounted volumes")
    run_as_non_root: bool = Field(default=True, description="Refuse to start the container as UID 0")
    read_only_root_filesystem: bool = Field(default=False, description="Mount the image read-only")

    @model_validator(mode="after")
    def _root_is_explicit(self) -> SecuritySpec:
        if self.run_as_non_root and self.run_as_user == 0:
            raise ValueError(ROOT_NEEDS_OPT_IN)
        return self


class ContainerSpec(ApiModel):
    """A small, explicit container: not a whole PodSpec, so the CRD stays small."""

    image: str = Field(min_length=1, max_length=512, description="Container image, e.g. registry.example/logproc:1.4")
    command: list[Arg] = Field(default_factory=list, max_length=64, description="Entrypoint; the image's if empty")
    args: list[Arg] = Field(default_factory=list, max_length=256, description="Arguments to the entrypoint")
    env: list[EnvVar] = Field(
        default_factory=list, max_length=64, description="Extra env vars (paraflow's own PARAFLOW_* always win)"
    )
    resources: Resources = Field(default_factory=Resources, description="CPU and memory requests and limits")
    security_context: SecuritySpec = Field(
        default_factory=SecuritySpec, description="User and filesystem settings; defaults pass Pod Security restricted"
    )


def _template_field(step: Step) -> Any:
    return Field(
        default=None,
        description=f"Pod settings paraflow does not model, for the {step.path}'s pods: a PodTemplateSpec fragment "
        "merged under paraflow's own (docs/pod-template.md)",
    )


def _refuse_template_conflicts(step: Step, model: ApiModel) -> None:
    if getattr(model, "pod_template", None) is None:
        return
    found = refusals(step, model.model_dump(by_alias=True, exclude_none=True))
    if found:
        raise ValueError("; ".join(found))


class BuiltinPartitioner(ApiModel):
    max_items_per_partition: int = Field(
        default=1000, ge=1, le=contract.MAX_ITEMS_PER_PARTITION, description="Items per partition at most"
    )
    max_bytes_per_partition: int | str = Field(
        default="1Gi",
        json_schema_extra={"x-kubernetes-int-or-string": True},
        description="Byte quantity, e.g. 2Gi: a partition closes before it would exceed this (objects: their "
        "sizes; records: their JSON). An object larger than this gets a partition of its own (paraflow plan "
        "warns); a record larger than this fails the plan",
    )
    key_glob: str = Field(
        default="", max_length=256, description="Only keys (relative to the prefix) matching this glob"
    )
    batch_input: dict[str, Any] | None = Field(
        default=None,
        description=f"A JSON object handed to every shard with its items (Step Functions' BatchInput), at most "
        f"{MAX_BATCH_INPUT_BYTES // 1024} KiB as JSON",
    )

    @field_validator("batch_input")
    @classmethod
    def _small_batch_input(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        size = len(json.dumps(v)) if v is not None else 0
        if size > MAX_BATCH_INPUT_BYTES:
            raise ValueError(f"batchInput is {size} bytes as JSON, more than {MAX_BATCH_INPUT_BYTES}")
        return v

    @field_validator("max_bytes_per_partition")
    @classmethod
    def _quantity(cls, v: int | str) -> int | str:
        if parse_bytes(v) < 1:
            raise ValueError("maxBytesPerPartition must be at least 1 byte")
        return v


class PartitionerSpec(ApiModel):
    """How the input is split: the built-in lister of objects, or your own container."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.builtin) != has(self.container)",
                    "message": "set exactly one of partitioner.builtin and partitioner.container",
                },
                *cel_rules(PARTITIONER),
            ]
        }
    )
    builtin: BuiltinPartitioner | None = Field(
        default=None, description="List the input prefix and batch its objects by count and bytes"
    )
    container: ContainerSpec | None = Field(
        default=None, description="Your partitioner: writes plan.json and partitions/<i>.json (see the contract)"
    )
    active_deadline_seconds: int = Field(
        default=3600,
        ge=10,
        le=7 * 24 * 3600,
        description="The partitioner Job fails (and so the workflow) if it runs longer than this",
    )
    pod_template: PodTemplate | None = _template_field(PARTITIONER)

    @model_validator(mode="after")
    def _exactly_one(self) -> PartitionerSpec:
        if (self.builtin is None) == (self.container is None):
            raise ValueError("set exactly one of partitioner.builtin and partitioner.container")
        _refuse_template_conflicts(PARTITIONER, self)
        return self


class Toleration(ApiModel):
    """As in a PodSpec: lets partition pods run on nodes with a matching taint."""

    key: str = Field(default="", max_length=316, description="Taint key ('' with Exists: every taint)")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Equal compares value; Exists does not")
    value: str = Field(default="", max_length=63, description="Taint value (operator Equal)")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="", description="Taint effect to tolerate; '' tolerates every effect"
    )


class ProcessorSpec(ContainerSpec):
    """The container every partition runs, as an Indexed Job of shardsPerPartition pods."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": cel_rules(PROCESSOR)})

    shards_per_partition: int = Field(
        default=1,
        ge=1,
        le=contract.MAX_SHARDS_PER_PARTITION,
        description="Pods per partition (Indexed Job completions and parallelism)",
    )
    backoff_limit_per_index: int = Field(
        default=0, ge=0, le=100, description="Pod retries of one shard inside one attempt"
    )
    non_retryable_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=list,
        max_length=255,
        description="Exit codes that fail the partition at once: no new attempt, only a redrive",
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, le=7 * 24 * 3600, description="An attempt running longer than this fails (and is retried)"
    )
    node_selector: Annotated[
        dict[str, Annotated[str, Field(max_length=63)]], Field(json_schema_extra={"maxProperties": 32})
    ] = Field(default_factory=dict, description="Node labels partition pods must run on")
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints partition pods tolerate"
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="ServiceAccount of partition pods (token not mounted)",
    )
    pod_annotations: Annotated[
        dict[str, Annotated[str, Field(max_length=4096)]], Field(json_schema_extra={"maxProperties": 32})
    ] = Field(
        default_factory=dict,
        description="Annotations on partition pods, e.g. a service mesh's or a cluster autoscaler's",
    )
    pod_template: PodTemplate | None = _template_field(PROCESSOR)

    @model_validator(mode="after")
    def _template_conflicts(self) -> ProcessorSpec:
        _refuse_template_conflicts(PROCESSOR, self)
        return self

    @field_validator("pod_annotations")
    @classmethod
    def _annotation_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            prefix, _, name = key.rpartition("/")
            if not QUALIFIED_NAME.match(key) or len(prefix) > 253 or len(name) > 63:
                raise ValueError(
                    f"podAnnotations key {key!r} is not an annotation key: an optional DNS subdomain and '/', "
                    "then up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                )
        return v


class ReduceSpec(ContainerSpec):
    """The container that runs once after the map succeeds (within tolerance), with the result
    manifest's key in PARAFLOW_MANIFEST; retried as spec.retry says; its failure fails the run.
    It runs with the processor's nodeSelector, tolerations and service account, unless its own
    podTemplate sets them."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": cel_rules(REDUCE)})

    active_deadline_seconds: int = Field(
        default=3600, ge=1, le=7 * 24 * 3600, description="An attempt running longer than this fails (and is retried)"
    )
    pod_template: PodTemplate | None = _template_field(REDUCE)

    @model_validator(mode="after")
    def _template_conflicts(self) -> ReduceSpec:
        _refuse_template_conflicts(REDUCE, self)
        return self


class LogsSpec(ApiModel):
    """Logs that outlive their pods: the operator stores the logs of a finished child Job's pods
    under the run's prefix (logs/<job>/<pod>.log) before it deletes anything, and `paraflow logs`
    reads them once the pods are gone."""

    keep: Literal["failed", "all", "none"] = Field(
        default="failed", description="Whose pods' logs are kept: failed Jobs' (the default), every Job's, or none"
    )
    max_bytes: int | str = Field(
        default="1Mi",
        json_schema_extra={"x-kubernetes-int-or-string": True},
        description="Bound of one pod's kept log (4Ki to 16Mi): a longer log keeps its last lines",
    )

    @field_validator("max_bytes")
    @classmethod
    def _bounded(cls, v: int | str) -> int | str:
        if not 4 * 1024 <= parse_bytes(v) <= 16 * 1024 * 1024:
            raise ValueError("logs.maxBytes must be between 4Ki and 16Mi")
        return v


class FailureTolerance(ApiModel):
    """Like Step Functions' ToleratedFailureCount/Percentage. Unset means none tolerated."""

    count: int | None = Field(
        default=None,
        ge=0,
        le=contract.MAX_PARTITIONS,
        description="Failed partitions tolerated (ToleratedFailureCount)",
    )
    percentage: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Share of partitions allowed to fail, 0-100 (ToleratedFailurePercentage)",
    )


class RetrySpec(ApiModel):
    """A failed partition is retried as a new attempt after
    min(maxDelaySeconds, intervalSeconds * backoffRate^(n-1)) seconds, jittered. A partition that
    exits with one of processor.nonRetryableExitCodes gets no new attempt (only a redrive)."""

    max_attempts: int = Field(default=3, ge=1, le=10, description="Attempts in total, the first included")
    interval_seconds: int = Field(default=10, ge=0, le=3600, description="Delay before the first retry")
    backoff_rate: float = Field(default=2.0, ge=1.0, le=10.0, description="Each retry waits this many times longer")
    max_delay_seconds: int = Field(default=300, ge=0, le=86400, description="Delays never exceed this")
    jitter: Literal["none", "full"] = Field(default="full", description="full: a random delay up to the computed one")


class ReplicationDestination(Location):
    """A bucket (and prefix) the outputs are copied to; on another server if ``storage`` says so."""

    name: str = Field(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Names the destination in status, reports and the replicas' metadata",
    )
    storage: StorageSpec | None = Field(default=None, description="Defaults to spec.storage")


class ReplicationFilter(ApiModel):
    prefix: str = Field(
        default="",
        max_length=900,
        description="Only outputs whose name (within its partition, or the reduce step) starts with this",
    )
    tags: Annotated[
        dict[str, Annotated[str, Field(max_length=256)]], Field(json_schema_extra={"maxProperties": 10})
    ] = Field(default_factory=dict, description="Only outputs carrying all these tags")


class ReplicationSpec(ApiModel):
    """Copies each succeeded partition's winning outputs to every destination, like S3 replication."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.destinations.all(d, self.destinations.exists_one(e, e.name == d.name))",
                    "message": "destination names must be unique",
                    "fieldPath": ".destinations",
                },
                {
                    "rule": "!self.deleteSync || self.mode == 'afterAll'",
                    "message": "deleteSync needs mode afterAll: only a run-wide pass knows what is extraneous",
                    "fieldPath": ".deleteSync",
                },
            ]
        }
    )
    mode: Literal["perPartition", "afterAll"] = Field(
        default="perPartition", description="perPartition starts as each partition succeeds; afterAll waits for all"
    )
    destinations: list[ReplicationDestination] = Field(
        min_length=1,
        max_length=8,
        description="Where outputs are copied to, as <prefix>p<partition>/<name> (the reduce step's as "
        "<prefix>reduce/<name>)",
    )
    filter: ReplicationFilter = Field(default_factory=ReplicationFilter, description="Which outputs are copied")
    delete_sync: bool = Field(
        default=False,
        description="Delete replicas this workflow made earlier for a destination whose output is no longer in the "
        "run; objects paraflow did not write there are never deleted, and each deletion is reported",
    )
    verify: Literal["none", "size", "checksum", "fullRead"] = Field(
        default="checksum",
        description="checksum: sha256 during the copy; size; fullRead: read each replica back. Every mode re-copies "
        "a replica missing, resized, unmarked, or (single-part) whose ETag differs; only fullRead finds a multipart "
        "replica rewritten under its size and mark",
    )
    deadline_seconds: int | None = Field(
        default=None, ge=1, le=7 * 86400, description="Warn (Event) when replication takes longer"
    )
    shards: int = Field(default=1, ge=1, le=100, description="afterAll: pods that split the copy by key hash")
    concurrency: int = Field(default=32, ge=1, le=512, description="Copies in flight per pod")
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="Replication Jobs active at once, counted apart from partition Jobs; default spec.maxConcurrency",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ReplicationSpec:
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("destination names must be unique")
        if self.delete_sync and self.mode != "afterAll":
            raise ValueError("deleteSync needs mode afterAll: only a run-wide pass knows what is extraneous")
        return self


REDUCE_NEEDS_AFTER_ALL = (
    "with a reduce step, replication.mode must be afterAll: the run-wide copy carries the reduce's outputs "
    "with the partitions' (a perPartition copy would leave them out)"
)


class WorkflowSpec(ApiModel):
    """What to run: the input, how it is split, what runs per partition and how many at once,
    how failures are retried and tolerated, where outputs go and where they are copied."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(self.input.bucket == self.output.bucket && "
                    "(self.input.prefix.startsWith(self.output.prefix) || "
                    "self.output.prefix.startsWith(self.input.prefix)))",
                    "message": "output must not overlap input: the same bucket with one prefix inside the other "
                    "would feed the workflow its own outputs",
                    "fieldPath": ".output",
                },
                {
                    "rule": "!has(self.replication) || self.replication.destinations.all(d, "
                    "(has(d.storage) && d.storage.endpoint != self.storage.endpoint) || d.bucket != self.output.bucket"
                    " || !(d.prefix.startsWith(self.output.prefix) || self.output.prefix.startsWith(d.prefix)))",
                    "message": "a replication destination must not overlap the output it copies (same server, "
                    "bucket and overlapping prefix)",
                    "fieldPath": ".replication",
                },
                {
                    "rule": "!has(self.reduce) || !has(self.replication) || "
                    "(has(self.replication.mode) && self.replication.mode == 'afterAll')",
                    "message": REDUCE_NEEDS_AFTER_ALL,
                    "fieldPath": ".replication.mode",
                },
                {
                    "rule": "!has(oldSelf.partitioner) || self.partitioner == oldSelf.partitioner",
                    "message": "partitioner is immutable after creation",
                    "fieldPath": ".partitioner",
                },
                {
                    "rule": "!has(oldSelf.processor) || self.processor == oldSelf.processor",
                    "message": "processor is immutable after creation (create a new workflow instead)",
                    "fieldPath": ".processor",
                },
            ]
        }
    )
    storage: StorageSpec = Field(description="The S3/MinIO server of input and output, and its credentials")
    input: InputSpec = Field(description="What to process: objects under a prefix, records in them, or items here")
    partitioner: PartitionerSpec = Field(description="How the input is split into partitions")
    processor: ProcessorSpec = Field(description="What runs for each partition")
    output: Location = Field(
        description="Where outputs go: each run writes under <prefix><workflow uid>/p<partition>/a<attempt>/, so runs "
        "sharing a prefix never overwrite each other; its records go under <prefix>_paraflow/<uid>/"
    )
    max_concurrency: int = Field(
        default=10, ge=1, le=10000, description="Partition Jobs active at once; may be changed while running"
    )
    failure_tolerance: FailureTolerance = Field(default_factory=FailureTolerance)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    suspend: bool = Field(default=False, description="Stop starting partitions; running ones finish")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, le=365 * 86400, description="Delete the workflow (and its Jobs) this long after it finished"
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=10,
        le=30 * 86400,
        description="A run whose every active child Job has waited this long for a pod (refused, unschedulable, "
        "no image), with nothing else moving, fails with reason ProgressDeadlineExceeded; its stuck Jobs are "
        "deleted, its manifest is written, and a redrive re-runs what did not finish. A child with a pod running "
        "is progress, however long it takes",
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="A Kueue LocalQueue in the workflow's namespace: every Job of the run carries its label "
        "(kueue.x-k8s.io/queue-name) and waits, as Queued, until Kueue admits it under the queue's quota",
    )
    queue_priority_class: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="A Kueue WorkloadPriorityClass for the run's Jobs (label kueue.x-k8s.io/priority-class): "
        "higher ones are admitted first and may preempt lower ones",
    )
    succeeded_jobs: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="Succeeded partition Jobs: Retain keeps them (and their pods' logs) until the workflow is "
        "deleted; Delete removes each once the workflow's status records its success, so the operator's memory "
        "and etcd stay flat however many partitions run",
    )
    replication: ReplicationSpec | None = Field(default=None, description="Copy outputs to other buckets or servers")
    reduce: ReduceSpec | None = Field(
        default=None, description="A container run once after the map, to combine its outputs and results"
    )
    logs: LogsSpec = Field(default_factory=LogsSpec, description="Which pods' logs are kept after the pods are gone")

    @model_validator(mode="after")
    def _no_overlap(self) -> WorkflowSpec:
        if self.reduce is not None and self.replication is not None and self.replication.mode != "afterAll":
            raise ValueError(REDUCE_NEEDS_AFTER_ALL)
        i, o = self.input, self.output
        if i.bucket == o.bucket and (i.prefix.startswith(o.prefix) or o.prefix.startswith(i.prefix)):
            raise ValueError(
                "output must not overlap input: the same bucket with one prefix inside the other "
                "would feed the workflow its own outputs"
            )
        for d in self.replication.destinations if self.replication else []:
            same_server = d.storage is None or d.storage.endpoint == self.storage.endpoint
            if (
                same_server
                and d.bucket == o.bucket
                and (d.prefix.startswith(o.prefix) or o.prefix.startswith(d.prefix))
            ):
                raise ValueError(
                    "a replication destination must not overlap the output it copies (same server, "
                    "bucket and overlapping prefix)"
                )
        return self


class PartitionCounts(ApiModel):
    """pending + queued + running + succeeded + failed + notRun = total."""

    total: int = Field(default=0, description="Partitions in the plan")
    pending: int = Field(default=0, description="Not started yet, and the run may still start them")
    queued: int = Field(
        default=0, description="Partitions whose Job waits for admission (Kueue), preempted ones included"
    )
    running: int = Field(default=0, description="Partitions with a Job running")
    succeeded: int = Field(default=0, description="Partitions whose winning attempt is recorded")
    failed: int = Field(default=0, description="Failed for good: after their last attempt, or non-retryable")
    not_run: int = Field(default=0, description="Never started by a run that failed: a redrive runs them")


class Condition(ApiModel):
    type: str = Field(max_length=64, description="What the condition is about, e.g. PodsBlocked")
    status: Literal["True", "False", "Unknown"] = Field(description="Whether it holds now")
    reason: str = Field(max_length=128, description="Why, in one CamelCase word (also the Event's reason)")
    message: str = Field(default="", max_length=2048, description="Why, for a person")
    last_transition_time: Timestamp = Field(description="When its status last changed (RFC 3339, UTC)")
    observed_generation: int | None = Field(default=None, description="The spec generation it was set from")


class ReplicationStatus(ApiModel):
    """Counts of copies made (by every attempt, failed ones included), replicas already there
    and deletions, from the replication Jobs' reports, per destination (two destinations count
    each output twice); a redrive of a succeeded run starts them again; failures count those of
    the last attempt. skipped counts what each attempt found already there, so a retried copy
    counts again, as skipped, what its failed attempt had copied."""

    objects: int = Field(default=0, description="Replicas written, per destination")
    bytes: int = Field(default=0, description="Bytes of the replicas written")
    skipped: int = Field(default=0, description="Replicas found already there, per destination")
    failed: int = Field(default=0, description="Objects the last attempt could not copy")
    deleted: int = Field(default=0, description="Replicas deleteSync removed")
    partitions: int = Field(
        default=0,
        description="Succeeded partitions whose outputs are replicated to every destination (kubectl get's REPLICATED "
        "column, a count of partitions like its neighbours); a redrive that copies again counts them again",
    )
    pending: int = Field(default=0, description="Succeeded partitions whose outputs still wait for replication")
    mode: Literal["perPartition", "afterAll"] | None = Field(
        default=None,
        description="The replication mode that replicatedIndexes, failedIndexes and attempts count in: a "
        "change of spec.replication.mode starts them over",
    )
    replicated_indexes: str = Field(default="", description="afterAll: 0 stands for the run-wide copy")
    failed_indexes: str = Field(default="", description="Units whose replication failed for good, range-compressed")
    attempts: Annotated[dict[str, str], Field(json_schema_extra={"maxProperties": 128})] = Field(
        default_factory=dict, description="Attempt number -> units whose latest attempt it is (only >1)"
    )
    start_time: Timestamp | None = Field(default=None, description="When the first replication Job started (RFC 3339)")


class ReduceStatus(ApiModel):
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] = Field(
        default="Pending", description="The step's state"
    )
    attempt: int = Field(default=1, description="The latest attempt (the winning one once Succeeded)")
    output_prefix: str = Field(default="", description="Where the winning attempt's outputs are")


class RedriveStatus(ApiModel):
    count: int = Field(default=0, description="Redrives taken")
    last_token: str = Field(
        default="", max_length=253, description="The last paraflow.dev/redrive annotation answered (taken or refused)"
    )


# Blocked: the run cannot go on, and the message says why: a Secret or a bucket missing, MinIO
# unreachable (the Blocked condition), or a child's pods refused, unschedulable or without their
# image (PodsBlocked). The next pass that can go on sets the phase from what it observes.
Phase = Literal[
    "Pending", "Blocked", "Partitioning", "Running", "Reducing", "Replicating", "Succeeded", "Failed", "Suspended"
]
# A workflow in one of these is done: only a redrive or its TTL acts on it.
TERMINAL: frozenset[Phase] = frozenset({"Succeeded", "Failed"})


class WorkflowStatus(ApiModel):
    """Small and bounded whatever the partition count: counters and range-compressed index sets."""

    phase: Phase = Field(
        default="Pending",
        description="Where the run is: Succeeded and Failed are final (only a redrive or the TTL acts on them); "
        "Blocked says why in the message",
    )
    observed_generation: int | None = Field(default=None, description="The spec generation this status is from")
    partitions: PartitionCounts = Field(default_factory=PartitionCounts, description="Partitions by state")
    succeeded_indexes: str = Field(default="", description='Succeeded partitions, range-compressed ("0-27,29")')
    failed_indexes: str = Field(default="", description="Partitions failed for good, range-compressed")
    running_indexes: str = Field(
        default="", description="Partitions with a Job running (as partitions.running counts them), range-compressed"
    )
    queued_indexes: str = Field(
        default="", description="Partitions whose Job waits for admission (Kueue), range-compressed"
    )
    attempts: Annotated[dict[str, str], Field(json_schema_extra={"maxProperties": 128})] = Field(
        default_factory=dict, description="Attempt number -> partitions whose latest attempt it is (only >1)"
    )
    redrive: RedriveStatus = Field(
        default_factory=RedriveStatus, description="Redrives taken, and the last paraflow.dev/redrive token answered"
    )
    replication: ReplicationStatus | None = None
    reduce: ReduceStatus | None = Field(default=None, description="The reduce step's phase, attempt and outputs")
    run_prefix: str = Field(default="", description="Where this run's records (plan, results, manifest) live")
    output_prefix: str = Field(default="", description="Where this run's outputs live: <output.prefix><uid>/")
    manifest: str = Field(
        default="",
        description="The result manifest, an s3://<bucket>/<key> URI (its bucket is spec.output's, on its endpoint), "
        "written when the map is done",
    )
    message: str = Field(default="", description="Why the run is Blocked or Failed, or how it succeeded")
    no_progress_since: Timestamp | None = Field(
        default=None,
        description="Since when (RFC 3339) every active child Job has waited for a pod with nothing else moving; "
        "the run fails spec.progressDeadlineSeconds after it",
    )
    start_time: Timestamp | None = Field(default=None, description="When the first pass ran (RFC 3339, UTC)")
    completion_time: Timestamp | None = Field(default=None, description="When the run became final (RFC 3339, UTC)")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Partitioned, Reduced, Replicated, Succeeded, Failed, Suspended, Blocked, PodsBlocked, "
        "ReplicationDeadlineExceeded, in the standard shape",
    )

    @classmethod
    def from_body(cls, status: Any) -> WorkflowStatus:
        """Tolerates what other writers (kopf) may have put beside our fields."""
        known = {f.alias or name for name, f in cls.model_fields.items()}
        return cls.model_validate({k: v for k, v in dict(status or {}).items() if k in known})


def spec_error(error: ValidationError) -> str:
    """The first problem of a spec as one line naming the field, for conditions and the CLI."""
    first = error.errors()[0]
    where = "spec." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "spec"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Succeeded", "type": "integer", "jsonPath": ".status.partitions.succeeded"},
        {"name": "Total", "type": "integer", "jsonPath": ".status.partitions.total"},
        {"name": "Queued", "type": "integer", "jsonPath": ".status.partitions.queued"},
        {"name": "Running", "type": "integer", "jsonPath": ".status.partitions.running"},
        {"name": "Pending", "type": "integer", "jsonPath": ".status.partitions.pending"},
        {"name": "Failed", "type": "integer", "jsonPath": ".status.partitions.failed"},
        {"name": "NotRun", "type": "integer", "jsonPath": ".status.partitions.notRun", "priority": 1},
        {"name": "Replicated", "type": "integer", "jsonPath": ".status.replication.partitions"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    ]


ROOT_VALIDATIONS = [
    {
        "rule": f"self.metadata.name.size() <= {c.MAX_WORKFLOW_NAME}",
        "message": f"metadata.name must be at most {c.MAX_WORKFLOW_NAME} characters (child Job names embed it)",
    },
]
