"""The Kubernetes calls the CLI makes, returning plain JSON documents.

Synchronous (a CLI has nothing else to do meanwhile). Responses are read raw
(``_preload_content=False``) so that callers deal in the same dicts ``kubectl get -o json``
prints, not in the client's optional-everything model classes.

The client is imported by the first call that needs it, never by importing this module: the CLI
imports this for every command, ``--help`` included, and the client costs more than the rest of
the CLI together (``bench/cli``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from paraflow import constants as c

if TYPE_CHECKING:
    from kubernetes import client

Doc = dict[str, Any]


def load() -> None:
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


def _json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Doc:
    response = call(*args, _preload_content=False, **kwargs)
    doc: Doc = json.loads(response.data)
    return doc


def _raw(call: Callable[..., Any], *args: Any) -> str:
    text: str = call(*args, _preload_content=False).data.decode(errors="replace")
    return text


def _custom() -> client.CustomObjectsApi:
    from kubernetes import client

    return client.CustomObjectsApi()


def workflow_uids() -> set[str]:
    """The uid of every ParallelWorkflow in the cluster (every namespace: a run is anyone's)."""
    listed = _json(_custom().list_cluster_custom_object, c.GROUP, c.VERSION, c.PLURAL)
    return {item["metadata"]["uid"] for item in listed.get("items", [])}


def get_workflow(name: str, namespace: str) -> Doc:
    return _json(_custom().get_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.PLURAL, name)


def patch_workflow(name: str, namespace: str, body: Doc) -> None:
    _json(_custom().patch_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.PLURAL, name, body)


def create_workflow(namespace: str, body: Doc, dry_run: bool = False) -> Doc:
    create = _custom().create_namespaced_custom_object
    if dry_run:
        return _json(create, c.GROUP, c.VERSION, namespace, c.PLURAL, body, dry_run="All")
    return _json(create, c.GROUP, c.VERSION, namespace, c.PLURAL, body)


def list_workflows(namespace: str, selector: str) -> list[Doc]:
    listed = _json(
        _custom().list_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.PLURAL, label_selector=selector
    )
    items: list[Doc] = listed.get("items", [])
    return items


def get_schedule(name: str, namespace: str) -> Doc:
    return _json(_custom().get_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.SCHEDULE_PLURAL, name)


def list_schedules(namespace: str) -> list[Doc]:
    listed = _json(_custom().list_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.SCHEDULE_PLURAL)
    items: list[Doc] = listed.get("items", [])
    return items


def patch_schedule(name: str, namespace: str, body: Doc) -> None:
    _json(_custom().patch_namespaced_custom_object, c.GROUP, c.VERSION, namespace, c.SCHEDULE_PLURAL, name, body)


def create_run(namespace: str, body: Doc) -> bool:
    """Creates a schedule's run; False when a run of that slot exists already."""
    from kubernetes.client.exceptions import ApiException

    try:
        create_workflow(namespace, body)
    except ApiException as e:
        if e.status == 409:
            return False
        raise
    return True


def workflow_events(name: str, namespace: str, reason: str) -> list[str]:
    """Messages of the workflow's Events with ``reason``, oldest first."""
    from kubernetes import client

    selector = f"involvedObject.kind={c.KIND},involvedObject.name={name},reason={reason}"
    items = _json(client.CoreV1Api().list_namespaced_event, namespace, field_selector=selector)["items"]
    items.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return [str(e.get("message", "")) for e in items]


def labels(obj: Doc) -> dict[str, str]:
    found: dict[str, str] = obj.get("metadata", {}).get("labels") or {}
    return found


def partition_jobs(name: str, namespace: str) -> list[Doc]:
    from kubernetes import client

    selector = f"{c.LABEL_WORKFLOW}={name},{c.LABEL_ROLE}={c.ROLE_PARTITION}"
    items: list[Doc] = _json(client.BatchV1Api().list_namespaced_job, namespace, label_selector=selector)["items"]
    return items


def failure_of(job: Doc, namespace: str) -> str:
    """Why a partition Job failed: its failed pod's exit code and reason, else the Job's condition."""
    from kubernetes import client

    job_name = job["metadata"]["name"]
    pods = _json(client.CoreV1Api().list_namespaced_pod, namespace, label_selector=f"job-name={job_name}")["items"]
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode"):
                return f"exit {terminated['exitCode']} ({terminated.get('reason') or 'Error'})"
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return f"{cond.get('reason')}: {cond.get('message')}"
    return "unknown"


def pod_logs(job_name: str, namespace: str, shard: int | None) -> list[tuple[str, str]]:
    from kubernetes import client

    core = client.CoreV1Api()
    selector = f"job-name={job_name}"
    if shard is not None:
        selector += f",batch.kubernetes.io/job-completion-index={shard}"
    pods = sorted(
        p["metadata"]["name"] for p in _json(core.list_namespaced_pod, namespace, label_selector=selector)["items"]
    )
    return [(pod, _raw(core.read_namespaced_pod_log, pod, namespace)) for pod in pods]


def read_secret(namespace: str, name: str) -> dict[str, str]:
    from kubernetes import client

    data = _json(client.CoreV1Api().read_namespaced_secret, name, namespace).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def deployment_available(name: str, namespace: str) -> bool:
    from kubernetes import client

    status = _json(client.AppsV1Api().read_namespaced_deployment, name, namespace).get("status") or {}
    return int(status.get("availableReplicas") or 0) >= 1


def crd_served(name: str) -> bool:
    from kubernetes import client

    status = _json(client.ApiextensionsV1Api().read_custom_resource_definition, name).get("status") or {}
    return any(x.get("type") == "Established" and x.get("status") == "True" for x in status.get("conditions") or [])
