"""Runs that share an output prefix never touch each other's outputs: every manifest names only
bytes its own run wrote.

Hypothesis draws two or three workflows writing to one output prefix of one bucket, from two
namespaces (so names may repeat), each over its own inputs (inputs may overlap too), each keeping
or deleting its succeeded Jobs, run at the same time; then one of them is deleted and re-created
under the same name (so its Jobs' names too) and runs again. After each round, every manifest's
recorded sha256 must match the bytes of each object it names."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from minio import Minio

from paraflow import constants as c
from paraflow_worker import contract
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import create, wait_phase, workflow

pytestmark = pytest.mark.cluster

OUTPUT = "shared/"


def manifest_mismatches(s3: Minio, bucket: str, manifest_url: str) -> list[str]:
    """Objects a manifest names whose bytes do not hash to what the run recorded."""
    key = manifest_url.removeprefix(f"s3://{bucket}/")
    manifest = contract.ResultManifest.model_validate_json(s3.get_object(bucket, key).read())
    bad = []
    for winner in manifest.succeeded:
        for listed in s3.list_objects(bucket, prefix=winner.results_prefix, recursive=True):
            shard = contract.ShardResult.model_validate_json(s3.get_object(bucket, listed.object_name or "").read())
            for out in shard.outputs:
                if hashlib.sha256(s3.get_object(bucket, out.key).read()).hexdigest() != out.sha256:
                    bad.append(out.key)
    return bad


@pytest.fixture
def second_namespace(core: client.CoreV1Api, namespace: str) -> Iterator[str]:
    """Another namespace with the same credentials Secret: workflows there may share names."""
    name = f"{namespace[:50]}-2"
    core.create_namespace({"metadata": {"name": name}})
    secret = core.read_namespaced_secret("minio-creds", namespace)
    core.create_namespaced_secret(name, {"metadata": {"name": "minio-creds"}, "data": secret.data})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


WORKFLOWS = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),
        st.sampled_from(["a", "b"]),
        st.integers(1, 7),
        st.sampled_from(["x/", "y/"]),
        st.sampled_from(["Retain", "Delete"]),
    ),
    min_size=2,
    max_size=3,
    unique_by=lambda w: (w[0], w[1]),
)


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(workflows=WORKFLOWS, recreate=st.integers(0, 2))
def test_workflows_sharing_an_output_prefix_each_keep_a_manifest_true_to_its_bytes(
    workflows: list[tuple[int, str, int, str, str]],
    recreate: int,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    second_namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    namespaces = [namespace, second_namespace]
    round_id = uuid.uuid4().hex[:6]

    def submit(ns_index: int, name: str, files: int, input_dir: str, succeeded_jobs: str, salt: str) -> dict:
        prefix = f"in-{round_id}/{input_dir}"
        for i in range(files):
            data = f"{salt} {name} file {i}\n".encode() * (i + 1)
            s3.put_object(bucket, f"{prefix}{salt}-{name}-{i}.log", io.BytesIO(data), len(data))
        body = workflow(
            f"{name}-{round_id}",
            test_env["PARAFLOW_TEST_S3_ENDPOINT"],
            bucket,
            maxConcurrency=3,
            succeededJobs=succeeded_jobs,
        )
        body["spec"]["input"]["prefix"] = prefix
        body["spec"]["output"]["prefix"] = OUTPUT
        return create(custom, namespaces[ns_index], body)

    def finish(obj: dict) -> str:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        done = wait_phase(custom, ns, name, {"Succeeded", "Failed"}, 240)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert done["status"]["outputPrefix"] == f"s3://{bucket}/{OUTPUT}{obj['metadata']['uid']}/"
        return str(done["status"]["manifest"])

    created = [submit(*w, salt="first") for w in workflows]
    manifests = [finish(obj) for obj in created]

    # One of them deleted and created again under the same name: a new run, a new uid.
    again = workflows[recreate % len(workflows)]
    old = created[recreate % len(workflows)]
    custom.delete_namespaced_custom_object(
        c.GROUP, c.VERSION, old["metadata"]["namespace"], c.PLURAL, old["metadata"]["name"]
    )
    wait_for(
        lambda: (
            not any(
                o["metadata"]["name"] == old["metadata"]["name"]
                for o in custom.list_namespaced_custom_object(
                    c.GROUP, c.VERSION, old["metadata"]["namespace"], c.PLURAL
                )["items"]
            )
        ),
        60,
        "the deleted workflow to go",
    )
    ns_index, name, files, input_dir, succeeded_jobs = again
    manifests.append(finish(submit(ns_index, name, files + 1, input_dir, succeeded_jobs, salt="second")))

    assert len(set(manifests)) == len(manifests)
    for url in manifests:
        assert manifest_mismatches(s3, bucket, url) == [], url
