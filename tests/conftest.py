"""The tiers (tests/tiers.py, enforced at collection) and the fixtures of those that need MinIO or a
cluster.

Those run against whatever ``KUBECONFIG`` points at plus the MinIO named by
``PARAFLOW_TEST_S3_*``: the local control plane (``make test`` starts it), a kind cluster, or
a user's own. Nothing is skipped when a component is missing: the fixture fails and says what.
Under pytest-xdist each worker runs its own operator, watching only the namespaces its tests make.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import settings
from kubernetes import client, config
from minio import Minio
from minio.error import S3Error
from playwright.sync_api import Browser

from paraflow_worker.storage import make_client
from tests.browser import chromium
from tests.operator_process import OperatorProcess
from tests.support import STORAGE_ENV, install_crd, namespace_prefix, require_env

PODRUNNER_NODE = os.environ.get("PARAFLOW_TEST_PODRUNNER_NODE", "podrunner")
DESELECTED = pytest.StashKey[list[str]]()
pytest_plugins = ["tests.tiers"]

# Fixed example counts (100 unless a test names its own), draws random per run: a failure prints
# the blob that replays it (`@reproduce_failure(...)`), and hack/test.sh logs the run's seed.
settings.register_profile("paraflow", max_examples=100, print_blob=True, database=None)
settings.load_profile("paraflow")


def _found(read: str, *args: str) -> bool:
    """Whether the cluster KUBECONFIG names answers ``read(*args)`` (404: it has no such thing)."""
    if not os.environ.get("KUBECONFIG"):
        return True  # nothing to ask: the fixtures fail and say what is missing
    api_client = config.new_client_from_config(os.environ["KUBECONFIG"])
    api = client.ApiextensionsV1Api(api_client) if "definition" in read else client.CoreV1Api(api_client)
    try:
        getattr(api, read)(*args)
    except client.exceptions.ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


# Markers of tests that need something only some clusters have: (whether this one has it, what).
OPTIONAL = {
    "cluster_dns": (
        lambda: _found("read_namespaced_service", "kube-dns", "kube-system"),
        "no DNS service (kube-system/kube-dns)",
    ),
    "kueue": (
        lambda: _found("read_custom_resource_definition", "workloads.kueue.x-k8s.io"),
        "no Kueue (hack/kueue.sh install)",
    ),
}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """After `-m`: tests that need cluster DNS or Kueue cannot run on a cluster without it (the
    local cluster has neither): they are deselected there, never skipped, and they run on kind
    (the runtime tier), where Kueue must be installed (PARAFLOW_TEST_REQUIRE_KUEUE=1)."""
    for marker, (present, missing) in OPTIONAL.items():
        needing = [item for item in items if item.get_closest_marker(marker)]
        if not needing or present():
            continue
        if marker == "kueue" and os.environ.get("PARAFLOW_TEST_REQUIRE_KUEUE") == "1":
            raise pytest.UsageError("PARAFLOW_TEST_REQUIRE_KUEUE=1, but this cluster has no Kueue")
        config.hook.pytest_deselected(items=needing)
        items[:] = [item for item in items if item not in needing]
        config.stash.setdefault(DESELECTED, []).extend(f"this cluster has {missing}: {item.nodeid}" for item in needing)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for line in config.stash.get(DESELECTED, []):
        terminalreporter.write_line(f"deselected, {line}")


@pytest.fixture(scope="session")
def storage_env() -> dict[str, str]:
    return require_env(STORAGE_ENV)


@pytest.fixture(scope="session")
def test_env() -> dict[str, str]:
    return require_env()


@pytest.fixture(scope="session")
def kube(test_env: dict[str, str]) -> client.ApiClient:
    config.load_kube_config(test_env["KUBECONFIG"])
    return client.ApiClient()


@pytest.fixture(scope="session")
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


@pytest.fixture(scope="session")
def batch(kube: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(kube)


@pytest.fixture(scope="session")
def s3(storage_env: dict[str, str]) -> Minio:
    return make_client(
        storage_env["PARAFLOW_TEST_S3_ENDPOINT"],
        storage_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
        storage_env["PARAFLOW_TEST_S3_SECRET_KEY"],
    )


@pytest.fixture
def namespace(core: client.CoreV1Api, test_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace with the MinIO credentials Secret (keys accessKey/secretKey) in it."""
    name = f"{namespace_prefix()}{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret(
        name,
        {
            "metadata": {"name": "minio-creds"},
            "data": {
                "accessKey": base64.b64encode(test_env["PARAFLOW_TEST_S3_ACCESS_KEY"].encode()).decode(),
                "secretKey": base64.b64encode(test_env["PARAFLOW_TEST_S3_SECRET_KEY"].encode()).decode(),
            },
        },
    )
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def temporary_bucket(client: Minio, stem: str) -> Iterator[str]:
    name = f"{stem}-{uuid.uuid4().hex[:12]}"
    client.make_bucket(name)
    yield name
    # The operator may still be writing when a test ends (the logs it keeps of a run's last
    # failed Job land just after the status the test waited for): empty until it stays empty.
    for _ in range(20):
        for obj in client.list_objects(name, recursive=True):
            client.remove_object(name, obj.object_name or "")
        try:
            client.remove_bucket(name)
            return
        except S3Error as e:
            if e.code != "BucketNotEmpty":
                raise
        time.sleep(0.5)
    client.remove_bucket(name)


@pytest.fixture
def bucket(s3: Minio) -> Iterator[str]:
    yield from temporary_bucket(s3, "t")


@pytest.fixture
def archive(s3: Minio) -> Iterator[str]:
    """Another bucket on the same server, e.g. a replication destination."""
    yield from temporary_bucket(s3, "ta")


@pytest.fixture(scope="session")
def crd(kube: client.ApiClient) -> None:
    install_crd(kube)


@pytest.fixture(scope="session")
def operator_session(crd: None) -> Iterator[OperatorProcess]:
    proc = OperatorProcess().start()
    proc.wait_started()
    yield proc
    proc.stop()
    print(f"\n--- operator log ({proc.log}) ---\n{proc.tail(40)}")


@pytest.fixture
def operator(operator_session: OperatorProcess) -> OperatorProcess:
    """The shared operator, restarted if an earlier test killed it."""
    if operator_session.proc is None or operator_session.proc.poll() is not None:
        operator_session.start()
        operator_session.wait_started()
    return operator_session


@pytest.fixture(scope="session")
def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


@pytest.fixture(scope="session")
def s3_second(storage_env: dict[str, str]) -> Minio:
    """The second MinIO server (another endpoint), for cross-server replication."""
    return make_client(
        storage_env["PARAFLOW_TEST_S3_ENDPOINT_2"],
        storage_env["PARAFLOW_TEST_S3_ACCESS_KEY"],
        storage_env["PARAFLOW_TEST_S3_SECRET_KEY"],
    )


@pytest.fixture
def bucket_second(s3_second: Minio) -> Iterator[str]:
    yield from temporary_bucket(s3_second, "t2")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium, Debian's (hack/chromium.sh installs it), driven by Playwright."""
    with chromium() as found:
        yield found
