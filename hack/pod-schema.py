#!/usr/bin/env python3
"""Writes operator/paraflow/podspec.schema.json: the PodSpec of the Kubernetes release we build,
as the structural schema a CRD field can carry (podTemplate.spec), so that `kubectl explain`
and the apiserver know every pod setting.

    hack/pod-schema.py   # reads the OpenAPI document of k8s.io/kubernetes@v$K8S_VERSION

From Kubernetes' own OpenAPI v3 document it inlines the references and keeps only what a CRD
schema may say: no defaults (the Job's apiserver defaults the pod it makes), no patch-strategy
extensions, and list-maps made atomic (their keys would need defaults). Quantities and
int-or-string values take both forms, as in the built-in types. Every field keeps Kubernetes'
description, so `kubectl explain` reads as it does for a Pod (each CRD stays near 0.8 MB,
well under etcd's 1.5 MiB). Lists that the CRD's CEL rules walk get a bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "operator" / "paraflow" / "podspec.schema.json"
DROP = {
    "default",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-unions",
    "x-kubernetes-group-version-kind",
    "x-kubernetes-list-map-keys",
}
# Set on a running pod only, never in a template the apiserver would accept.
NOT_IN_TEMPLATES = {"ephemeralContainers"}
INT_OR_STRING = {"io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity"}
# (type, field): bound -- what the CEL rules in paraflow.pod_template iterate must be bounded.
BOUNDS = {
    ("io.k8s.api.core.v1.PodSpec", "containers"): {"maxItems": 16},
    ("io.k8s.api.core.v1.Container", "env"): {"maxItems": 256},
    ("io.k8s.api.core.v1.Container", "name"): {"maxLength": 63},
    ("io.k8s.api.core.v1.EnvVar", "name"): {"maxLength": 253},
}


def k8s_version() -> str:
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].split()[0]
    raise SystemExit("K8S_VERSION missing from hack/versions.env")


def openapi_document(version: str) -> dict[str, Any]:
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@v{version}"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/tmp",
    )
    folder = Path(json.loads(found.stdout)["Dir"])
    return json.loads((folder / "api" / "openapi-spec" / "v3" / "api__v1_openapi.json").read_text())


class Inliner:
    def __init__(self, schemas: dict[str, Any]) -> None:
        self.schemas = schemas

    def ref(self, name: str, trail: tuple[str, ...]) -> dict[str, Any]:
        if name in INT_OR_STRING:
            return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        if name in trail:
            raise SystemExit(f"{name} refers to itself: not expressible in a CRD schema")
        return self.node(self.schemas[name], name, (*trail, name))

    def node(self, schema: dict[str, Any], owner: str | None, trail: tuple[str, ...]) -> dict[str, Any]:
        if "$ref" in schema:
            return self.ref(schema["$ref"].split("/")[-1], trail)
        if "allOf" in schema:
            (only,) = schema["allOf"]
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            inner = self.node(only, None, trail)
            if "description" in rest:
                inner["description"] = rest["description"]
            return {**inner, **self.node({k: v for k, v in rest.items() if k != "description"}, None, trail)}
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in DROP:
                continue
            if key == "x-kubernetes-list-type" and value == "map":
                out[key] = "atomic"
            elif key == "properties":
                out[key] = {
                    name: {**self.field(sub, trail), **BOUNDS.get((owner or "", name), {})}
                    for name, sub in value.items()
                    if not (owner == "io.k8s.api.core.v1.PodSpec" and name in NOT_IN_TEMPLATES)
                }
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                out[key] = self.node(value, None, trail)
            else:
                out[key] = value
        return out

    def field(self, sub: dict[str, Any], trail: tuple[str, ...]) -> dict[str, Any]:
        node = self.node(sub, None, trail)
        if "description" in sub:
            node["description"] = " ".join(sub["description"].split())
        return node


def main() -> int:
    version = k8s_version()
    document = openapi_document(version)
    spec = Inliner(document["components"]["schemas"]).ref("io.k8s.api.core.v1.PodSpec", ())
    spec.pop("required", None)  # a fragment: paraflow supplies the containers
    spec["description"] = f"A PodSpec fragment (Kubernetes v{version}), merged under the pod paraflow builds"
    OUT.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size} bytes) from Kubernetes v{version}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
