"""Storage addressed by a Service name, as users address an in-cluster MinIO: the Helm-installed
operator and the workflow's pods resolve ``minio.<namespace>.svc`` through the cluster's DNS and
reach MinIO through kube-proxy. Needs cluster DNS (kind, most clusters); on a cluster without
it (the local clusters) conftest deselects it and says so."""

from __future__ import annotations

import socket
import uuid
from urllib.parse import urlsplit

import pytest
from kubernetes import client
from minio import Minio

from tests.e2e.chart import installed
from tests.operator_process import OperatorProcess
from tests.workflows import create, upload_inputs, wait_phase, workflow

# CoreDNS and kube-proxy; the test stops the shared operator.
pytestmark = [pytest.mark.runtime, pytest.mark.cluster_dns, pytest.mark.serial]


def serve_minio_as_a_service(core: client.CoreV1Api, namespace: str, endpoint: str) -> str:
    """A Service with no selector whose one endpoint is the test MinIO; returns its in-cluster URL."""
    url = urlsplit(endpoint)
    port = url.port or 80
    address = socket.gethostbyname(url.hostname or "")
    core.create_namespaced_service(
        namespace, {"metadata": {"name": "minio"}, "spec": {"ports": [{"name": "s3", "port": port}]}}
    )
    client.DiscoveryV1Api().create_namespaced_endpoint_slice(
        namespace,
        {
            "metadata": {"name": "minio-host", "labels": {"kubernetes.io/service-name": "minio"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address]}],
            "ports": [{"name": "s3", "port": port, "protocol": "TCP"}],
        },
    )
    return f"http://minio.{namespace}.svc:{port}"


def test_a_workflow_reaches_its_storage_by_a_service_name(
    operator_session: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
) -> None:
    operator_session.kill()  # the operator outside the cluster cannot resolve Service names
    in_cluster = serve_minio_as_a_service(core, namespace, test_env["PARAFLOW_TEST_S3_ENDPOINT"])
    with installed("pfdns", f"paraflow-dns-{uuid.uuid4().hex[:5]}", namespace, core):
        inputs = upload_inputs(s3, bucket, 6)
        create(custom, namespace, workflow("bydns", in_cluster, bucket))
        done = wait_phase(custom, namespace, "bydns", {"Succeeded", "Failed"}, 180)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["spec"]["storage"]["endpoint"] == in_cluster
    assert done["status"]["partitions"]["succeeded"] == len(inputs) // 3
    manifest = done["status"]["manifest"].removeprefix(f"s3://{bucket}/")
    assert s3.stat_object(bucket, manifest).size, "the operator wrote its manifest through the Service"
