"""The ParallelWorkflowSchedule API: a ParallelWorkflow template run on a cron schedule, with
CronJob's policies, the scheduled time as a parameter, history limits and a completion webhook.

The CRD is generated from these models (``python -m paraflow.crdgen``), like the workflow's.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, JsonValue, field_validator

from paraflow import constants as c
from paraflow import cron, template
from paraflow.apimodel import ApiModel
from paraflow.models import DNS_SUBDOMAIN, QUALIFIED_NAME, Timestamp, WorkflowSpec

ScheduleName = Annotated[str, Field(max_length=253)]


def _parameter_rule(path: str, field: str) -> str:
    return f"!has({path}.{field}) || {path}.{field}.matches(r'{template.FIELD}')"


# The apiserver refuses a parameter it cannot fill in, in the prefixes; the operator checks the
# rest (env values, whose 32 KiB would cost a CEL rule more than its budget, and a parameter
# anywhere else) and says why in the schedule's status and an Event.
TEMPLATE_RULES: list[JsonValue] = [
    {"rule": _parameter_rule("self.spec.input", "prefix"), "message": template.HELP, "fieldPath": ".spec.input.prefix"},
    {
        "rule": _parameter_rule("self.spec.output", "prefix"),
        "message": template.HELP,
        "fieldPath": ".spec.output.prefix",
    },
    {
        "rule": "!has(self.spec.replication) || self.spec.replication.destinations.all(d, "
        + _parameter_rule("d", "prefix")
        + ")",
        "message": template.HELP,
        "fieldPath": ".spec.replication.destinations",
    },
]


class WorkflowTemplate(ApiModel):
    """The ParallelWorkflow each run is made from. ``{{ scheduledTime }}`` in the documented fields
    is replaced by the run's slot (see docs/schedules.md)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": TEMPLATE_RULES})

    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": 32}, description="Added to each run's labels"
    )
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": 32}, description="Added to each run's annotations"
    )
    spec: WorkflowSpec = Field(description="A ParallelWorkflow spec; its parameters are filled in per run")

    @field_validator("labels", "annotations")
    @classmethod
    def _keys(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not QUALIFIED_NAME.fullmatch(k) or k.startswith(f"{c.GROUP}/")]
        if bad:
            raise ValueError(f"not a label or annotation key of yours: {', '.join(bad)} ({c.GROUP}/ is paraflow's)")
        return v


class SecretKeyRef(ApiModel):
    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="A Secret in the schedule's namespace")
    key: str = Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="The key holding the signing secret")


class WebhookSpec(ApiModel):
    url: str = Field(
        max_length=2048, pattern=r"^https?://[^\s/]+(/\S*)?$", description="Gets a POST with the run's summary (JSON)"
    )
    signing_secret: SecretKeyRef | None = Field(
        default=None,
        description="Signs each delivery: header X-Paraflow-Signature is sha256=<hex HMAC-SHA256 of the body>",
    )
    timeout_seconds: int = Field(default=10, ge=1, le=60, description="Per attempt")
    max_attempts: int = Field(
        default=5, ge=1, le=10, description="Attempts per delivery, with doubling backoff from 1 s"
    )


class HookSpec(ApiModel):
    webhook: WebhookSpec = Field(description="Called once each run reaches Succeeded or Failed")


CRON_HELP = (
    "five cron fields (minute hour day-of-month month day-of-week) or @yearly, @monthly, @weekly, @daily, @hourly"
)


class ScheduleSpec(ApiModel):
    schedule: str = Field(max_length=128, pattern=cron.SHAPE, description=f"When runs start: {CRON_HELP}, in timeZone")
    time_zone: str = Field(
        default="Etc/UTC", max_length=64, description="An IANA time zone name the schedule and the parameters use"
    )
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Forbid",
        description="A slot comes while a run is active: Allow starts it too, Forbid waits (until "
        "startingDeadlineSeconds, then the slot is missed), Replace deletes the active run and starts it",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=10,
        le=365 * 24 * 3600,
        description="A slot not started within this long after its time is missed (an Event says so); unset: no "
        "deadline, so after downtime or a suspension every slot since the last one runs (at most 100)",
    )
    suspend: bool = Field(default=False, description="No new run starts; active ones finish")
    successful_runs_history_limit: int = Field(default=3, ge=0, le=100, description="Succeeded runs kept")
    failed_runs_history_limit: int = Field(default=1, ge=0, le=100, description="Failed runs kept")
    workflow_template: WorkflowTemplate = Field(description="The ParallelWorkflow each run is")
    hook: HookSpec | None = Field(default=None, description="Told when each run ends")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        cron.check(v)
        return v

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r} (an IANA name, e.g. Europe/Berlin)") from e
        return v

    @field_validator("workflow_template")
    @classmethod
    def _parameters(cls, v: WorkflowTemplate) -> WorkflowTemplate:
        problems = template.problems(v.spec.model_dump(by_alias=True, mode="json"))
        if problems:
            raise ValueError("; ".join(problems))
        return v


class HookDelivery(ApiModel):
    run: str = Field(max_length=253, description="The run the delivery was about")
    phase: str = Field(max_length=32, description="How the run ended")
    result: Literal["Delivered", "Failed"] = Field(description="Delivered: a 2xx answer; Failed: every attempt failed")
    attempts: int = Field(description="Attempts made")
    code: int | None = Field(default=None, description="The last HTTP status answered, if any")
    error: str = Field(default="", max_length=512, description="Why the last attempt failed")
    time: Timestamp = Field(description="When the last attempt ended")


class ScheduleStatus(ApiModel):
    last_schedule_time: Timestamp | None = Field(
        default=None, description="The latest slot started, or missed (every slot up to it is decided)"
    )
    last_successful_time: Timestamp | None = Field(default=None, description="When the latest run succeeded")
    next_schedule_time: Timestamp | None = Field(default=None, description="The next slot")
    active: list[ScheduleName] = Field(
        default_factory=list, max_length=100, description="Runs that have not finished, oldest first"
    )
    active_runs: int = Field(default=0, description="How many runs have not finished (kubectl get's ACTIVE)")
    deliveries: list[HookDelivery] = Field(
        default_factory=list, max_length=10, description="The latest webhook deliveries, newest last"
    )
    message: str = Field(default="", max_length=2048, description="Why the schedule cannot run, if it cannot")
    observed_generation: int | None = Field(default=None, description="The spec generation last acted on")


SCHEDULE_ROOT_VALIDATIONS: list[JsonValue] = [
    {
        "rule": f"self.metadata.name.size() <= {c.MAX_SCHEDULE_NAME}",
        "message": f"metadata.name must be at most {c.MAX_SCHEDULE_NAME} characters (a run is named "
        "<schedule>-<slot in minutes since the epoch>)",
    },
]


def schedule_printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
        {"name": "TimeZone", "type": "string", "jsonPath": ".spec.timeZone", "priority": 1},
        {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
        {"name": "Active", "type": "integer", "jsonPath": ".status.activeRuns"},
        {"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime"},
        {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
