"""The operator's Kubernetes writes against the real apiserver: they reuse the client's pooled
connections instead of opening (and TLS-handshaking) a new one per write, and a Job delete removes
only the Job of the uid it names."""

from __future__ import annotations

import asyncio

from kubernetes import client

from paraflow.k8s.api import KubeApi
from tests.support import wait_for

THREADS = 4


def job(name: str, namespace: str) -> dict[str, object]:
    """A suspended Job: the apiserver stores it, no pod is made."""
    pod = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.invalid/none:1"}]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"suspend": True, "template": {"spec": pod}},
    }


def test_forty_writes_reuse_pooled_connections(kube: client.ApiClient, namespace: str) -> None:
    api = KubeApi(client.ApiClient(kube.configuration), THREADS, 1000, 1000, 30)

    async def writes() -> None:
        await asyncio.gather(*(api.create_job(job(f"reuse-{i}", namespace)) for i in range(20)))
        batch = client.BatchV1Api(kube)
        uids = [batch.read_namespaced_job(f"reuse-{i}", namespace).metadata.uid for i in range(20)]
        await asyncio.gather(*(api.delete_job(namespace, f"reuse-{i}", uids[i]) for i in range(20)))

    asyncio.run(writes())
    pools = api.write_batch.api_client.rest_client.pool_manager.pools
    # urllib3's RecentlyUsedContainer has keys() but no iteration of its own.
    opened = sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118
    api.close()
    assert 1 <= opened <= THREADS, f"{opened} connections opened for 40 writes on {THREADS} threads"


def test_a_job_delete_spares_another_job_that_took_the_same_name(kube: client.ApiClient, namespace: str) -> None:
    """A re-created workflow's Job has its predecessor's name: a delete judged on the old one must
    not remove it."""
    api = KubeApi(client.ApiClient(kube.configuration), THREADS, 1000, 1000, 30)
    batch = client.BatchV1Api(kube)
    asyncio.run(api.create_job(job("named", namespace)))
    old = batch.read_namespaced_job("named", namespace).metadata.uid
    batch.delete_namespaced_job("named", namespace, propagation_policy="Background")
    wait_for(
        lambda: not batch.list_namespaced_job(namespace, field_selector="metadata.name=named").items, 30, "old Job gone"
    )
    asyncio.run(api.create_job(job("named", namespace)))
    new = batch.read_namespaced_job("named", namespace).metadata.uid

    assert asyncio.run(api.delete_job(namespace, "named", old)) is False
    assert batch.read_namespaced_job("named", namespace).metadata.uid == new, "the newer Job stays"
    assert asyncio.run(api.delete_job(namespace, "named", new)) is True
    api.close()
