"""``podTemplate``: any pod setting paraflow does not model (volumes, imagePullSecrets, affinity,
priority, sidecars, ...), as a Kubernetes PodTemplateSpec fragment merged under the pod paraflow
builds (paraflow.k8s.podmerge).

What paraflow must own to keep its contract (labels it selects by, PARAFLOW_* variables, the
container's image and command, restart policy, security defaults) cannot be set here: a template
that tries is refused at admission by CEL rules and, for clients that skip the apiserver, by the
same checks in Python. Both come from the one table in :func:`conflicts`, so they say the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any

from pydantic import Field, JsonValue, WithJsonSchema

from paraflow.apimodel import ApiModel

# Labels paraflow selects its pods by, the Job controller's (which must match the Job's), and
# Kueue's (on Jobs only: on a pod they would make it a Workload of its own).
RESERVED_LABEL_PREFIXES = ("paraflow.dev/", "batch.kubernetes.io/", "kueue.x-k8s.io/")
RESERVED_LABELS = ("app.kubernetes.io/managed-by", "job-name", "controller-uid")
ENV_PREFIX = "PARAFLOW_"
# Set from the step's own fields (image, command, ...) or by paraflow itself.
OWNED_CONTAINER_FIELDS = ("image", "command", "args", "resources", "securityContext")
# Pod-level security paraflow sets from the step's securityContext (and seccomp RuntimeDefault).
OWNED_POD_SECURITY = ("runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "seccompProfile")


@cache
def pod_spec_schema() -> dict[str, Any]:
    """Kubernetes' PodSpec as a structural schema (hack/pod-schema.py writes it)."""
    text = resources.files("paraflow").joinpath("podspec.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


PodSpecFragment = Annotated[dict[str, Any], WithJsonSchema(pod_spec_schema())]
StringMap = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(json_schema_extra={"maxProperties": 64})]


class PodTemplateMetadata(ApiModel):
    labels: StringMap = Field(default_factory=dict, description="Labels added to the pods")
    annotations: StringMap = Field(default_factory=dict, description="Annotations added to the pods")


class PodTemplate(ApiModel):
    """A PodTemplateSpec fragment merged under the pod paraflow builds."""

    metadata: PodTemplateMetadata = Field(default_factory=PodTemplateMetadata, description="Pod labels, annotations")
    spec: PodSpecFragment = Field(
        default_factory=dict,
        description="Any PodSpec field: volumes, imagePullSecrets, affinity, topologySpreadConstraints, "
        "priorityClassName, initContainers (sidecars: restartPolicy Always), runtimeClassName, hostAliases, "
        "dnsConfig, ... The container named as paraflow's (processor, partitioner or reduce) is merged into it "
        "(volumeMounts, envFrom, probes, ...)",
    )


@dataclass(frozen=True)
class Step:
    """Where a template sits: ``path`` names it in messages, ``fields_at`` where the step's own
    container fields are, ``container`` paraflow's container in its pods."""

    path: str
    fields_at: str
    container: str
    placement: bool = False  # the processor also has nodeSelector, tolerations, ... of its own


PROCESSOR = Step("processor", "processor", "processor", placement=True)
PARTITIONER = Step("partitioner", "partitioner.container", "partitioner")
REDUCE = Step("reduce", "reduce", "reduce")


@dataclass(frozen=True)
class Conflict:
    """One thing a template may not do: ``cel`` holds when the step (``self``) is fine, and
    ``found`` says, for the step as a dict, whether it is broken."""

    cel: str
    message: str
    found: Callable[[Mapping[str, Any]], bool]


def _template(step: Mapping[str, Any]) -> Mapping[str, Any]:
    return step.get("podTemplate") or {}


def _spec(step: Mapping[str, Any]) -> Mapping[str, Any]:
    return _template(step).get("spec") or {}


def _containers(step: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(_spec(step).get("containers") or [])


T = "self.podTemplate"
HAS_SPEC = f"has({T}) && has({T}.spec)"
HAS_CONTAINERS = f"{HAS_SPEC} && has({T}.spec.containers)"
HAS_SECURITY = f"{HAS_SPEC} && has({T}.spec.securityContext)"
HAS_LABELS = f"has({T}) && has({T}.metadata) && has({T}.metadata.labels)"
HAS_ANNOTATIONS = f"has({T}) && has({T}.metadata) && has({T}.metadata.annotations)"


def conflicts(step: Step) -> list[Conflict]:
    at = f"{step.path}.podTemplate"
    main = f"{at}.spec.containers[{step.container}]"
    found = [
        Conflict(
            f"!({HAS_SPEC} && has({T}.spec.restartPolicy))",
            f"{at}.spec.restartPolicy: paraflow sets Never (retries are the operator's)",
            lambda s: "restartPolicy" in _spec(s),
        ),
        Conflict(
            f"!({HAS_CONTAINERS}) || {T}.spec.containers.all(c, c.name == '{step.container}')",
            f"{at}.spec.containers: only one named '{step.container}', merged into paraflow's container; a sidecar "
            "goes in initContainers with restartPolicy: Always, so that it does not keep a pod from completing",
            lambda s: any(c.get("name") != step.container for c in _containers(s)),
        ),
        Conflict(
            f"!({HAS_CONTAINERS}) || {T}.spec.containers.all(c, !has(c.env) || "
            f"c.env.all(e, !e.name.startsWith('{ENV_PREFIX}')))",
            f"{main}.env: {ENV_PREFIX}* variables are paraflow's",
            lambda s: any(e.get("name", "").startswith(ENV_PREFIX) for c in _containers(s) for e in c.get("env") or []),
        ),
        Conflict(
            f"!({HAS_SECURITY}) || !({' || '.join(f'has({T}.spec.securityContext.{f})' for f in OWNED_POD_SECURITY)})",
            f"{at}.spec.securityContext: {', '.join(OWNED_POD_SECURITY)} are set from "
            f"{step.fields_at}.securityContext (seccomp is RuntimeDefault)",
            lambda s: any(f in (_spec(s).get("securityContext") or {}) for f in OWNED_POD_SECURITY),
        ),
        Conflict(
            f"!({HAS_LABELS}) || {T}.metadata.labels.all(k, "
            + " && ".join(
                [f"!k.startsWith('{p}')" for p in RESERVED_LABEL_PREFIXES] + [f"k != '{n}'" for n in RESERVED_LABELS]
            )
            + ")",
            f"{at}.metadata.labels: {', '.join(f'{p}*' for p in RESERVED_LABEL_PREFIXES)}, "
            f"{', '.join(RESERVED_LABELS)} are paraflow's, the Job controller's or Kueue's",
            lambda s: any(
                k.startswith(RESERVED_LABEL_PREFIXES) or k in RESERVED_LABELS
                for k in (_template(s).get("metadata") or {}).get("labels") or {}
            ),
        ),
        Conflict(
            f"!({HAS_CONTAINERS}) || {T}.spec.containers.all(c, !has(c.restartPolicy) && !has(c.restartPolicyRules))",
            f"{main}.restartPolicy: a container restarted in its pod goes around the operator's retries",
            lambda s: any("restartPolicy" in c or "restartPolicyRules" in c for c in _containers(s)),
        ),
    ]
    found += [_owned_container_field(step, name) for name in OWNED_CONTAINER_FIELDS]
    if step.placement:
        found += [_placed_twice(step, name) for name in ("nodeSelector", "tolerations", "serviceAccountName")]
        found.append(
            Conflict(
                f"!({HAS_ANNOTATIONS}) || !has(self.podAnnotations) || "
                f"!self.podAnnotations.exists(k, k in {T}.metadata.annotations)",
                f"{at}.metadata.annotations: a key also in {step.path}.podAnnotations; set it in one place",
                lambda s: bool(
                    set(s.get("podAnnotations") or {})
                    & set((_template(s).get("metadata") or {}).get("annotations") or {})
                ),
            )
        )
    return found


def _owned_container_field(step: Step, name: str) -> Conflict:
    return Conflict(
        f"!({HAS_CONTAINERS}) || {T}.spec.containers.all(c, !has(c.{name}))",
        f"{step.path}.podTemplate.spec.containers[{step.container}].{name}: set by paraflow from "
        f"{step.fields_at}.{name}",
        lambda s: any(name in c for c in _containers(s)),
    )


def _placed_twice(step: Step, name: str) -> Conflict:
    ours = f"has(self.{name}) && size(self.{name}) > 0"
    return Conflict(
        f"!({ours} && {HAS_SPEC} && has({T}.spec.{name}))",
        f"{step.path}.{name} and {step.path}.podTemplate.spec.{name} are both set; set one",
        lambda s: bool(s.get(name)) and name in _spec(s),
    )


def cel_rules(step: Step) -> list[JsonValue]:
    return [{"rule": x.cel, "message": x.message} for x in conflicts(step)]


def refusals(step: Step, body: Mapping[str, Any]) -> list[str]:
    """The messages of every conflict in ``body`` (the step's spec, as on the wire)."""
    return [x.message for x in conflicts(step) if x.found(body)]
