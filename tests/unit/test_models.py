"""The API models: defaults, the rules the CRD cannot express, and the generated CRD."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from paraflow import crdgen
from paraflow.models import WorkflowSpec, parse_bytes
from tests.unit.builders import make_spec, spec_dict

pytestmark = pytest.mark.unit


def test_defaults_match_the_documented_ones() -> None:
    spec = make_spec()
    assert spec.max_concurrency == 10
    assert spec.retry.max_attempts == 3
    assert spec.retry.jitter == "full"
    assert spec.processor.shards_per_partition == 1
    assert spec.failure_tolerance.count is None


@pytest.mark.parametrize(
    ("text", "expected"), [("2Gi", 2 * 2**30), ("500M", 500_000_000), ("1048576", 1048576), (7, 7)]
)
def test_byte_quantities_parse_like_kubernetes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output.bucket": "raw-logs", "output.prefix": "2026/"}, "output must not overlap input"),
        ({"partitioner": {}}, "exactly one of partitioner.builtin and partitioner.container"),
        ({"input.prefix": "a/../b"}, "'.' or '..' segments"),
        ({"partitioner.builtin.maxBytesPerPartition": "2 GB"}, "is not a byte quantity"),
        ({"maxConcurrency": 0}, "greater than or equal to 1"),
        ({"processor.podAnnotations": {"inject sidecar": "no"}}, "is not an annotation key"),
        ({"processor.podAnnotations": {"Example.com/x": "1"}}, "is not an annotation key"),
        ({"processor.podAnnotations": {"x/" + "n" * 64: "1"}}, "is not an annotation key"),
        ({"succeededJobs": "Sometimes"}, "'Retain' or 'Delete'"),
    ],
)
def test_invalid_specs_are_rejected_with_the_reason(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkflowSpec.model_validate(spec_dict(**overrides))


@pytest.mark.parametrize(
    "key", ["sidecar.istio.io/inject", "cluster-autoscaler.kubernetes.io/safe-to-evict", "a", "team_Name.v2"]
)
def test_annotation_keys_kubernetes_accepts_are_accepted(key: str) -> None:
    assert make_spec(**{"processor.podAnnotations": {key: "v"}}).processor.pod_annotations == {key: "v"}


def test_the_checked_in_crd_matches_the_models() -> None:
    assert crdgen.main(["--check"]) == 0, "run: python -m paraflow.crdgen"


def test_the_crd_is_structural_every_string_and_list_bounded() -> None:
    schema = yaml.safe_load(crdgen.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    unbounded: list[str] = []

    def walk(node: dict, path: str) -> None:
        assert "$ref" not in node and "anyOf" not in node, path
        if path.endswith(crdgen.POD_SPEC):
            # Kubernetes' PodSpec, as unbounded as in Pods; what the CEL rules walk is bounded
            # (hack/pod-schema.py), and the apiserver's rule-cost check passes at every install.
            return
        if node.get("type") == "string" and "maxLength" not in node and "enum" not in node:
            unbounded.append(path)
        if node.get("type") == "array":
            if "maxItems" not in node:
                unbounded.append(path)
            walk(node["items"], path + "[]")
        if node.get("type") == "object" and "additionalProperties" in node:
            if "maxProperties" not in node:
                unbounded.append(path)
            walk(node["additionalProperties"], path + "{}")
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}")

    walk(schema, "spec")
    assert unbounded == []


def _descriptions(node: object, path: str = "") -> list[tuple[str, str | None]]:
    """(path, description) of every property in a schema."""
    found: list[tuple[str, str | None]] = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            found.append((f"{path}.{name}", sub.get("description")))
            found += _descriptions(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            found += _descriptions(node["items"], path + "[]")
    return found


def test_kubectl_explain_has_one_line_descriptions_and_every_status_field_has_one() -> None:
    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    every = _descriptions(schema)
    assert [p for p, d in every if d and "\n" in d] == [], "a description broken mid-sentence"
    status = [p for p, d in every if p.startswith(".status.") and not d]
    assert status == [], "status fields kubectl explain would show without a description"
