"""podTemplate: every pod setting paraflow does not model reaches the pod, paraflow's contract
wins over any template, and a template that tries to change it is refused naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from paraflow.k8s import builders
from paraflow.k8s.builders import WorkflowRef
from paraflow.models import WorkflowSpec
from paraflow.settings import Settings
from tests.pod_templates import CONFLICTS, EVERYTHING
from tests.unit.builders import make_spec, spec_dict

pytestmark = pytest.mark.unit

WF = WorkflowRef("daily", "analytics", "0b8d5c1e-uid")
SETTINGS = Settings(worker_image="paraflow/worker:0.1.0", identity="t")


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]


def partition_pod(**overrides: Any) -> dict[str, Any]:
    return pod_of(builders.partition_job(WF, make_spec(**overrides), 3, attempt=2, settings=SETTINGS))


@pytest.mark.parametrize(("case", "step", "fields", "message"), CONFLICTS, ids=[c[0] for c in CONFLICTS])
def test_a_template_that_changes_what_paraflow_owns_is_refused_naming_the_field(
    case: str, step: str, fields: dict[str, Any], message: str
) -> None:
    body = spec_dict(**{"reduce.image": "python:3.11"})
    target = body["partitioner"] if step == "partitioner" else body[step]
    target.update(copy.deepcopy(fields))
    with pytest.raises(ValidationError) as raised:
        WorkflowSpec.model_validate(body)
    assert message in str(raised.value)


def test_every_setting_of_a_template_reaches_the_pod_and_the_container_takes_mounts_and_env() -> None:
    pod = partition_pod(**{"processor.podTemplate": EVERYTHING})
    spec, wanted = pod["spec"], EVERYTHING["spec"]
    for field in wanted.keys() - {"containers"}:
        assert spec[field] == wanted[field], field
    (container,) = spec["containers"]
    assert container["volumeMounts"] == wanted["containers"][0]["volumeMounts"]
    names = [e["name"] for e in container["env"]]
    assert names[0] == "FROM_TEMPLATE" and "PARAFLOW_PARTITION" in names
    assert pod["metadata"]["labels"]["team"] == "logs"
    assert pod["metadata"]["annotations"] == {"example.com/cost-centre": "42"}


def test_the_processor_env_overrides_a_template_variable_of_the_same_name() -> None:
    template = {"spec": {"containers": [{"name": "processor", "env": [{"name": "MODE", "value": "template"}]}]}}
    pod = partition_pod(**{"processor.podTemplate": template, "processor.env": [{"name": "MODE", "value": "mine"}]})
    modes = [e["value"] for e in pod["spec"]["containers"][0]["env"] if e["name"] == "MODE"]
    assert modes == ["mine"]


def test_the_partitioner_and_reduce_pods_take_their_own_templates() -> None:
    secrets = {"spec": {"imagePullSecrets": [{"name": "registry"}]}}
    spec = make_spec(
        **{
            "partitioner.podTemplate": secrets,
            "reduce": {"image": "python:3.11", "podTemplate": {"spec": {"nodeSelector": {"pool": "big"}}}},
            "processor.nodeSelector": {"pool": "small"},
        }
    )
    partitioner = pod_of(builders.partitioner_job(WF, spec, 1, settings=SETTINGS))
    assert partitioner["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    reduce = pod_of(builders.reduce_job(WF, spec, 1, settings=SETTINGS))
    assert reduce["spec"]["nodeSelector"] == {"pool": "big"}, "the reduce step's own template places it"
    assert "imagePullSecrets" not in reduce["spec"]
    assert partition_pod(**{"processor.nodeSelector": {"pool": "small"}})["spec"]["nodeSelector"] == {"pool": "small"}


def test_without_a_template_the_token_and_service_links_stay_off() -> None:
    spec = partition_pod()["spec"]
    assert (spec["automountServiceAccountToken"], spec["enableServiceLinks"]) == (False, False)


ALLOWED = sorted(EVERYTHING["spec"].keys() - {"containers"})
label_keys = st.from_regex(r"\A[a-z]([a-z0-9.-]{0,20}[a-z0-9])?(/[a-z0-9]{1,10})?\Z").filter(
    lambda k: not k.startswith("paraflow.dev/") and k != "app.kubernetes.io/managed-by"
)
templates = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries({"labels": st.dictionaries(label_keys, st.text(max_size=20), max_size=4)}),
        "spec": st.sets(st.sampled_from(ALLOWED)).map(lambda keys: {k: EVERYTHING["spec"][k] for k in keys}),
        "env": st.lists(st.from_regex(r"\A[A-Z][A-Z0-9_]{0,12}\Z").filter(lambda n: not n.startswith("PARAFLOW_"))),
        "security": st.sampled_from([{}, {"supplementalGroups": [5]}, {"sysctls": [{"name": "a.b", "value": "1"}]}]),
    }
)


def owned(pod: dict[str, Any]) -> dict[str, Any]:
    """What paraflow's contract consists of, in a built pod."""
    (container,) = pod["spec"]["containers"]
    return {
        "labels": {k: v for k, v in pod["metadata"]["labels"].items() if k.startswith("paraflow.dev/")},
        "restartPolicy": pod["spec"]["restartPolicy"],
        "security": {k: pod["spec"]["securityContext"][k] for k in ("runAsUser", "runAsNonRoot", "seccompProfile")},
        "container": {k: container.get(k) for k in ("name", "image", "command", "args", "securityContext")},
        "env": [e for e in container["env"] if e["name"].startswith("PARAFLOW_")],
    }


@settings(max_examples=60, deadline=None)
@given(drawn=templates)
def test_no_allowed_template_changes_what_paraflow_owns_and_all_of_it_reaches_the_pod(drawn: dict[str, Any]) -> None:
    template = {
        "metadata": drawn["metadata"],
        "spec": {
            **drawn["spec"],
            "securityContext": drawn["security"],
            "containers": [{"name": "processor", "env": [{"name": n, "value": "t"} for n in drawn["env"]]}],
        },
    }
    plain, templated = partition_pod(), partition_pod(**{"processor.podTemplate": template})
    assert owned(templated) == owned(plain)
    for key, value in drawn["spec"].items():
        assert templated["spec"][key] == value
    for key, value in drawn["security"].items():
        assert templated["spec"]["securityContext"][key] == value
    for key, value in drawn["metadata"]["labels"].items():
        assert templated["metadata"]["labels"][key] == value
    env = {e["name"] for e in templated["spec"]["containers"][0]["env"]}
    assert set(drawn["env"]) <= env
