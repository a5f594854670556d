"""A step's podTemplate merged under the pod paraflow builds (docs/pod-template.md).

paraflow's settings win; the admission rules (paraflow.pod_template) refuse a template that sets
one of them, so winning never silently drops what a user asked for. Two of paraflow's settings
are defaults a template may change: the service-account token and the service links, which a
pod using workload identity or a mesh may need.
"""

from __future__ import annotations

import copy
from typing import Any

from paraflow.pod_template import PodTemplate

YIELDING = {"automountServiceAccountToken": False, "enableServiceLinks": False}


def merge(
    template: PodTemplate | None, *, metadata: dict[str, Any], spec: dict[str, Any], container: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's metadata and spec: ``template`` under paraflow's ``metadata`` and ``spec``, whose
    container named ``container`` takes the template's container of that name under it."""
    if template is None:
        return metadata, {**YIELDING, **spec}
    extra = copy.deepcopy(template.spec)
    theirs = {c.get("name"): c for c in extra.pop("containers", [])}
    merged = {**YIELDING, **extra, **spec}
    if "securityContext" in extra:
        merged["securityContext"] = {**extra["securityContext"], **spec.get("securityContext", {})}
    merged["containers"] = [
        _container(theirs[c["name"]], c) if c["name"] == container and c["name"] in theirs else c
        for c in spec["containers"]
    ]
    meta = {**metadata, "labels": {**template.metadata.labels, **metadata.get("labels", {})}}
    annotations = {**template.metadata.annotations, **metadata.get("annotations", {})}
    if annotations:
        meta["annotations"] = annotations
    return meta, merged


def _container(theirs: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    out = {**theirs, **ours}
    if "imagePullPolicy" in theirs:
        out["imagePullPolicy"] = theirs["imagePullPolicy"]  # paraflow's is only the operator's default
    named = {e["name"] for e in ours.get("env", [])}
    env = [e for e in theirs.get("env", []) if e.get("name") not in named] + ours.get("env", [])
    if env:
        out["env"] = env
    return out
