"""The operator's Kubernetes writes against the real apiserver: they reuse the client's pooled
connections instead of opening (and TLS-handshaking) a new one per write, and a Job delete removes
only the Job of the uid it names. The operator's own Job watch lists, follows and, when its
place in the stream is too old, lists again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from kubernetes import client

from paraflow import constants as c
from paraflow.k8s.api import JobRefused, KubeApi
from paraflow.k8s.jobindex import JobIndex
from paraflow.k8s.jobwatch import JobWatch
from tests.support import wait_for

pytestmark = pytest.mark.cluster

THREADS = 4


def job(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    """A suspended Job: the apiserver stores it, no pod is made."""
    pod = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.invalid/none:1"}]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"suspend": True, "template": {"spec": pod}},
    }


def child(name: str, namespace: str, partition: int) -> dict[str, object]:
    """A Job labelled as a partition Job of workflow uid ``w1``."""
    labels = {
        c.LABEL_WORKFLOW_UID: "w1",
        c.LABEL_ROLE: c.ROLE_PARTITION,
        c.LABEL_PARTITION: str(partition),
        c.LABEL_ATTEMPT: "1",
    }
    return job(name, namespace, labels)


def test_forty_writes_reuse_pooled_connections(kube: client.ApiClient, namespace: str) -> None:
    api = KubeApi(client.ApiClient(kube.configuration), THREADS, 1000, write_burst=1000, request_timeout=30)

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


def test_a_job_create_stores_our_body_says_false_for_a_name_taken_and_raises_the_apiservers_refusal(
    kube: client.ApiClient, namespace: str
) -> None:
    """create_job sends the builders' dict without the client's typed model: what the apiserver
    stores is that dict, a 409 is False (an earlier pass made it), and a refusal is JobRefused
    with the apiserver's own message (the run fails showing it)."""
    api = KubeApi(client.ApiClient(kube.configuration), THREADS, 1000, write_burst=1000, request_timeout=30)
    body = job("raw", namespace, {"paraflow.dev/odd": "a.b_c-1"})
    body["metadata"]["annotations"] = {"note": 'ünïcode ✓ and "quotes"'}  # type: ignore[index]
    assert asyncio.run(api.create_job(body)) is True
    stored = client.BatchV1Api(kube).read_namespaced_job("raw", namespace)
    assert stored.metadata.labels["paraflow.dev/odd"] == "a.b_c-1"
    assert stored.metadata.annotations == {"note": 'ünïcode ✓ and "quotes"'}
    assert stored.spec.suspend is True
    assert asyncio.run(api.create_job(body)) is False, "a name already taken is a 409: not an error"

    refused = job("refused", namespace)
    refused["spec"]["template"]["spec"]["containers"] = []  # type: ignore[index]
    with pytest.raises(JobRefused) as caught:
        asyncio.run(api.create_job(refused))
    api.close()
    assert "spec.template.spec.containers: Required value" in str(caught.value), caught.value


def test_a_job_delete_spares_another_job_that_took_the_same_name(kube: client.ApiClient, namespace: str) -> None:
    """A re-created workflow's Job has its predecessor's name: a delete judged on the old one must
    not remove it."""
    api = KubeApi(client.ApiClient(kube.configuration), THREADS, 1000, write_burst=1000, request_timeout=30)
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


def test_the_job_watch_indexes_jobs_made_before_and_after_it_started_and_forgets_deleted_ones(
    kube: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(kube)
    batch.create_namespaced_job(namespace, child("early", namespace, 0))
    batch.create_namespaced_job(namespace, job("unlabelled", namespace))

    async def scenario() -> None:
        index, woken = JobIndex(), []
        watch = JobWatch(
            client.ApiClient(kube.configuration),
            [namespace],
            index,
            wake=woken.append,
            server_timeout=30,
            client_timeout=60,
        )
        watch.start()
        await asyncio.wait_for(watch.synced.wait(), 30)
        assert [j.name for j in index.jobs_of("w1")] == ["early"], "listed before any pass may run"
        assert len(index) == 1, "a Job without the workflow label is not ours"

        async def until(check: Callable[[], bool], what: str) -> None:
            for _ in range(300):
                if check():
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(what)

        await asyncio.to_thread(batch.create_namespaced_job, namespace, child("late", namespace, 1))
        await until(lambda: {j.name for j in index.jobs_of("w1")} == {"early", "late"}, "the new Job indexed")
        await asyncio.to_thread(batch.delete_namespaced_job, "early", namespace, propagation_policy="Background")
        await until(lambda: [j.name for j in index.jobs_of("w1")] == ["late"], "the deleted Job forgotten")
        assert woken and set(woken) == {"w1"}
        watch.stop()

    asyncio.run(scenario())
