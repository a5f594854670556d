"""podTemplate in real pods: a ConfigMap volume the processor reads, an emptyDir it writes to, an
imagePullSecret and a PriorityClass that reach the pod, and a native sidecar that does not keep a
partition from completing (a real kubelet runs and stops it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from minio import Minio

from tests.operator_process import OperatorProcess
from tests.workflows import WORKER_IMAGE, create, upload_inputs, wait_phase, workflow

pytestmark = pytest.mark.runtime

# Reads the mounted setting, round-trips it through the scratch volume, writes it as the output.
PROCESSOR = """
from pathlib import Path
from paraflow_worker import sdk
with sdk.shard() as shard:
    greeting = Path("/etc/settings/greeting").read_text()
    Path("/scratch/note").write_text(greeting + f" from partition {shard.partition}")
    shard.write("note.txt", Path("/scratch/note").read_bytes())
"""
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.fixture
def priority_class(kube: client.ApiClient) -> Iterator[tuple[str, int]]:
    scheduling = client.SchedulingV1Api(kube)
    name, value = f"paraflow-test-{uuid.uuid4().hex[:6]}", 1000
    scheduling.create_priority_class({"metadata": {"name": name}, "value": value})
    yield name, value
    scheduling.delete_priority_class(name)


def test_volumes_pull_secrets_priority_and_a_sidecar_from_the_template_work_in_real_pods(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    priority_class: tuple[str, int],
    test_env: dict[str, str],
) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}, "data": {"greeting": "hello"}})
    registry = {"auths": {"registry.example": {"auth": "dXNlcjpwYXNz"}}}
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "registry"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json.dumps(registry)},
        },
    )
    upload_inputs(s3, bucket, 6)  # 2 partitions
    body = workflow("templated", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, succeededJobs="Retain")
    body["spec"]["processor"] = {
        "image": WORKER_IMAGE,
        "command": ["python", "-c", PROCESSOR],
        "podTemplate": {
            "metadata": {"labels": {"team": "logs"}},
            "spec": {
                "volumes": [
                    {"name": "settings", "configMap": {"name": "settings"}},
                    {"name": "scratch", "emptyDir": {}},
                ],
                "containers": [
                    {
                        "name": "processor",
                        "volumeMounts": [
                            {"name": "settings", "mountPath": "/etc/settings", "readOnly": True},
                            {"name": "scratch", "mountPath": "/scratch"},
                        ],
                    }
                ],
                "initContainers": [
                    {
                        "name": "sidecar",
                        "image": WORKER_IMAGE,
                        "restartPolicy": "Always",
                        "command": ["sleep", "3600"],
                        "securityContext": RESTRICTED_CONTAINER,
                    }
                ],
                "imagePullSecrets": [{"name": "registry"}],
                "priorityClassName": priority_class[0],
            },
        },
    }
    wf = create(custom, namespace, body)
    done = wait_phase(custom, namespace, "templated", {"Succeeded", "Failed"}, 240)
    assert done["status"]["phase"] == "Succeeded", done["status"]

    uid = wf["metadata"]["uid"]
    for index in (0, 1):
        note = s3.get_object(bucket, f"output/{uid}/p{index}/a1/note.txt").read().decode()
        assert note == f"hello from partition {index}", "read from the ConfigMap, through the emptyDir"
    pods = core.list_namespaced_pod(namespace, label_selector="paraflow.dev/role=partition").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.priority == priority_class[1]
        assert [s.name for s in pod.spec.image_pull_secrets] == ["registry"]
        assert pod.metadata.labels["team"] == "logs"
        assert pod.status.phase == "Succeeded", "the sidecar was stopped when the processor ended"
