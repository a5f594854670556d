"""Generates the ParallelWorkflow and ParallelWorkflowSchedule CRDs from the pydantic models.

    python -m paraflow.crdgen            # writes crds/ and the chart's copy
    python -m paraflow.crdgen --check    # exits 1 if either file is out of date

pydantic emits JSON Schema; a CRD wants a *structural* OpenAPI v3 schema: no ``$ref``, no
``anyOf`` for optional fields, ``nullable`` instead of a null type, and no ``title``s. This
module does that translation and nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from paraflow import constants as c
from paraflow.models import ROOT_VALIDATIONS, WorkflowSpec, WorkflowStatus, printer_columns
from paraflow.schedule_models import (
    SCHEDULE_ROOT_VALIDATIONS,
    ScheduleSpec,
    ScheduleStatus,
    schedule_printer_columns,
)

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FILE = "parallelworkflows.paraflow.dev.yaml"
SCHEDULE_FILE = "parallelworkflowschedules.paraflow.dev.yaml"
FOLDERS = [REPO / "crds", REPO / "charts" / "paraflow" / "crds"]
API_DOC = REPO / "docs" / "api.md"
SCHEDULE_API_DOC = REPO / "docs" / "api-schedule.md"
_DROP = {"title", "$defs"}
POD_SPEC = ".podTemplate.spec"


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if not {k: v for k, v in schema.items() if k not in ("description", "title")}:
        # Any JSON value (inline items): the apiserver keeps it as given.
        return {**{k: v for k, v in schema.items() if k == "description"}, "x-kubernetes-preserve-unknown-fields": True}
    if "$ref" in schema:
        target = defs[schema["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        if schema.get("x-kubernetes-int-or-string"):
            return {k: v for k, v in rest.items() if k not in _DROP}
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {schema['anyOf']} structurally")
        single = structural({**options[0], **rest}, defs)
        if rest.get("default", 0) is None:
            single.pop("default", None)
        return single
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties" and value is False:
            continue  # extra="forbid": a structural schema prunes unknown fields by itself
        elif key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True  # a free-form object (batchInput)
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key == "description":
            # Docstrings wrap at the source's width; kubectl explain would break its lines there.
            out[key] = " ".join(value.split())
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def schema_of(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[Any]
    status: type[Any]
    columns: list[dict[str, Any]]
    root_rules: list[Any]
    description: str


WORKFLOW = Kind(
    c.KIND,
    c.PLURAL,
    c.SINGULAR,
    c.SHORT_NAMES,
    WorkflowSpec,
    WorkflowStatus,
    printer_columns(),
    ROOT_VALIDATIONS,
    "A Map-state fan-out: partition the input, run one Indexed Job per partition under a concurrency limit, "
    "collect a result manifest.",
)
SCHEDULE = Kind(
    c.SCHEDULE_KIND,
    c.SCHEDULE_PLURAL,
    c.SCHEDULE_SINGULAR,
    c.SCHEDULE_SHORT_NAMES,
    ScheduleSpec,
    ScheduleStatus,
    schedule_printer_columns(),
    SCHEDULE_ROOT_VALIDATIONS,
    "A ParallelWorkflow run on a cron schedule, one run per slot, with CronJob's concurrency policies, the "
    "scheduled time as a parameter, history limits and a completion webhook.",
)


def without_transition_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """A template is edited freely: the workflow's rules about changes (oldSelf) do not apply to it."""
    out = dict(schema)
    if "x-kubernetes-validations" in out:
        kept = [r for r in out["x-kubernetes-validations"] if "oldSelf" not in r["rule"]]
        if kept:
            out["x-kubernetes-validations"] = kept
        else:
            del out["x-kubernetes-validations"]
    if "properties" in out:
        out["properties"] = {k: without_transition_rules(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = without_transition_rules(out["items"])
    return out


def crd(kind: Kind = WORKFLOW) -> dict[str, Any]:
    status = schema_of(kind.status)
    status.pop("required", None)  # the operator fills status in over time
    spec = schema_of(kind.spec)
    if kind is SCHEDULE:
        spec = without_transition_rules(spec)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{c.GROUP}"},
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": ["paraflow"],
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": kind.columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "x-kubernetes-validations": kind.root_rules,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def render(kind: Kind = WORKFLOW) -> str:
    header = "# Generated by `python -m paraflow.crdgen` from the models in operator/paraflow/. Do not edit.\n"
    return header + yaml.safe_dump(crd(kind), sort_keys=False, width=120)


def api_reference(kind: Kind = WORKFLOW) -> str:
    """docs/api.md: every field of spec and status, from the same schema the apiserver enforces."""
    version = crd(kind)["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    lines = [
        f"# {kind.kind} API reference",
        "",
        f"`{c.GROUP}/{c.VERSION}`, kind `{kind.kind}` (short name `{kind.short_names[0]}`). Generated by",
        "`python -m paraflow.crdgen` from the models in `operator/paraflow/`; a test fails when it drifts.",
        "",
    ]
    for section in ("spec", "status"):
        lines += [
            f"## {section}",
            "",
            "| field | type | default | constraints | description |",
            "|---|---|---|---|---|",
        ]
        lines += _rows(root["properties"][section], section)
        lines.append("")
    lines += ["## Validation rules (CEL)", ""]
    lines += [f"- `{r['rule']}`: {r['message']}" for r in _rules(root, "")]
    return "\n".join(lines) + "\n"


def _rows(node: dict[str, Any], path: str) -> list[str]:
    rows = []
    for name, sub in node.get("properties", {}).items():
        here = f"{path}.{name}"
        kind = sub.get("type", "int or string" if sub.get("x-kubernetes-int-or-string") else "")
        if kind == "array":
            kind = f"[]{sub['items'].get('type', '')}"
        bounds = [
            f"{k} {sub[k]}"
            for k in ("minimum", "maximum", "minLength", "maxLength", "maxItems", "maxProperties")
            if k in sub
        ]
        if "pattern" in sub:
            bounds.append(f"pattern `{sub['pattern'].replace('|', chr(92) + '|')}`")
        if "enum" in sub:
            bounds.append("one of " + ", ".join(f"`{v}`" for v in sub["enum"]))
        if name in node.get("required", []):
            bounds.append("required")
        default = json.dumps(sub["default"]) if "default" in sub and not isinstance(sub["default"], dict) else ""
        text = (sub.get("description") or "").replace("\n", " ").replace("|", "\\|")
        rows.append(f"| `{here}` | {kind} | {default} | {'; '.join(bounds)} | {text} |")
        if here.endswith(POD_SPEC):
            continue  # Kubernetes' own PodSpec: `kubectl explain` documents it, this page would drown in it
        if sub.get("type") == "object":
            rows += _rows(sub, here)
        if sub.get("type") == "array" and sub["items"].get("type") == "object":
            rows += _rows(sub["items"], here + "[]")
    return rows


def _rules(node: dict[str, Any], path: str) -> list[dict[str, str]]:
    found = [dict(r, rule=f"{path or 'root'}: {r['rule']}") for r in node.get("x-kubernetes-validations", [])]
    for name, sub in node.get("properties", {}).items():
        found += _rules(sub, f"{path}.{name}".lstrip("."))
    if node.get("type") == "array":
        found += _rules(node["items"], path + "[]")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the ParallelWorkflow CRD")
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    wanted = {folder / WORKFLOW_FILE: render(WORKFLOW) for folder in FOLDERS}
    wanted |= {folder / SCHEDULE_FILE: render(SCHEDULE) for folder in FOLDERS}
    wanted |= {API_DOC: api_reference(WORKFLOW), SCHEDULE_API_DOC: api_reference(SCHEDULE)}
    stale = [t for t, text in wanted.items() if not t.exists() or t.read_text() != text]
    if args.check:
        for t in stale:
            print(f"{t.relative_to(REPO)} is stale: run python -m paraflow.crdgen", file=sys.stderr)
        return 1 if stale else 0
    for t in stale:
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text(wanted[t])
    return 0


if __name__ == "__main__":
    sys.exit(main())
