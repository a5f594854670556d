"""Generates the ParallelWorkflow CRD from the pydantic models.

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
from pathlib import Path
from typing import Any

import yaml

from paraflow import constants as c
from paraflow.models import ROOT_VALIDATIONS, WorkflowSpec, WorkflowStatus, printer_columns

REPO = Path(__file__).resolve().parents[2]
TARGETS = [
    REPO / "crds" / "parallelworkflows.paraflow.dev.yaml",
    REPO / "charts" / "paraflow" / "crds" / "parallelworkflows.paraflow.dev.yaml",
]
API_DOC = REPO / "docs" / "api.md"
_DROP = {"title", "$defs"}


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


def crd() -> dict[str, Any]:
    status = schema_of(WorkflowStatus)
    status.pop("required", None)  # the operator fills status in over time
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{c.PLURAL}.{c.GROUP}"},
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": c.KIND,
                "listKind": f"{c.KIND}List",
                "plural": c.PLURAL,
                "singular": c.SINGULAR,
                "shortNames": list(c.SHORT_NAMES),
                "categories": ["paraflow"],
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns(),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A Map-state fan-out: partition the input, run one Indexed Job per "
                            "partition under a concurrency limit, collect a result manifest.",
                            "required": ["spec"],
                            "x-kubernetes-validations": ROOT_VALIDATIONS,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": schema_of(WorkflowSpec),
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m paraflow.crdgen` from operator/paraflow/models.py. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


def api_reference() -> str:
    """docs/api.md: every field of spec and status, from the same schema the apiserver enforces."""
    version = crd()["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    lines = [
        "# ParallelWorkflow API reference",
        "",
        f"`{c.GROUP}/{c.VERSION}`, kind `{c.KIND}` (short name `{c.SHORT_NAMES[0]}`). Generated by",
        "`python -m paraflow.crdgen` from `operator/paraflow/models.py`; a test fails when it drifts.",
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
    wanted = {t: render() for t in TARGETS} | {API_DOC: api_reference()}
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
