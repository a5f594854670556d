"""What the view reads from and does to the cluster, as the user: the Kubernetes API through their
kubeconfig and MinIO with the workflow's credentials (read from its Secret, never sent on). The
server knows only this interface; tests give it a fake of their own to draw any status."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Protocol

from paraflow import constants as c
from paraflow.cli import actions, kube

Doc = dict[str, Any]


class Cluster(Protocol):
    def workflows(self, namespace: str) -> list[Doc]: ...
    def schedules(self, namespace: str) -> list[Doc]: ...
    def workflow(self, namespace: str, name: str) -> Doc: ...
    def follow(self, namespace: str, name: str, stop: threading.Event) -> Iterator[Doc]:
        """The workflow each time it changes, until ``stop`` is set; NotFound once it is deleted."""
        ...

    def failures(self, wf: Doc) -> dict[int, str]: ...
    def logs(self, wf: Doc, partition: int | None, attempt: int | None) -> actions.Logs: ...
    def manifest(self, wf: Doc) -> Doc: ...
    def redrive(self, namespace: str, name: str) -> actions.Redrive: ...
    def suspend(self, namespace: str, name: str, suspended: bool) -> str: ...
    def set_concurrency(self, namespace: str, name: str, limit: int) -> str: ...


class KubeCluster:
    """The real one: the CLI's own calls (``paraflow.cli.kube`` and ``actions``)."""

    def __init__(self, *, endpoint: str | None = None, redrive_timeout: float = 20) -> None:
        kube.load()
        self.endpoint, self.redrive_timeout = endpoint, redrive_timeout

    def workflows(self, namespace: str) -> list[Doc]:
        return kube.list_workflows(namespace, "")

    def schedules(self, namespace: str) -> list[Doc]:
        return kube.list_schedules(namespace)

    def workflow(self, namespace: str, name: str) -> Doc:
        return kube.get_workflow(name, namespace)

    def follow(self, namespace: str, name: str, stop: threading.Event) -> Iterator[Doc]:
        from kubernetes import client, watch

        api = client.CustomObjectsApi()
        while not stop.is_set():
            w = watch.Watch()  # type: ignore[no-untyped-call]
            for event in w.stream(  # type: ignore[no-untyped-call]
                api.list_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                field_selector=f"metadata.name={name}",
                timeout_seconds=20,  # so that a stopped follower ends soon
            ):
                if stop.is_set():
                    w.stop()  # type: ignore[no-untyped-call]
                    break
                if event["type"] == "DELETED":
                    raise actions.NotFound(f"{namespace}/{name} was deleted")
                if event["type"] in ("ADDED", "MODIFIED"):
                    yield event["object"]

    def failures(self, wf: Doc) -> dict[int, str]:
        return actions.failures(wf)

    def logs(self, wf: Doc, partition: int | None, attempt: int | None) -> actions.Logs:
        return actions.logs(wf, partition=partition, attempt=attempt, endpoint=self.endpoint)

    def manifest(self, wf: Doc) -> Doc:
        """The result manifest's counts and where it is (not its partitions: it can be large)."""
        where = (wf.get("status") or {}).get("manifest", "")
        if not where:
            raise actions.NotFound("no result manifest yet: it is written when the map is done")
        client = actions.storage_client(actions.spec_of(wf), wf["metadata"]["namespace"], self.endpoint)
        _, manifest = actions.read_manifest(client, where)
        return {"uri": where, "succeeded": len(manifest.succeeded), "failedCount": len(manifest.failed)}

    def redrive(self, namespace: str, name: str) -> actions.Redrive:
        return actions.redrive(name, namespace, timeout=self.redrive_timeout)

    def suspend(self, namespace: str, name: str, suspended: bool) -> str:
        return actions.suspend(name, namespace) if suspended else actions.resume(name, namespace)

    def set_concurrency(self, namespace: str, name: str, limit: int) -> str:
        return actions.set_concurrency(name, namespace, limit)
