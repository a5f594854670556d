"""The coordination.k8s.io/v1 Lease the operator's replicas elect their leader with (I/O only).

It has its own API client and is never paced by the Job write bucket: a renewal queued behind
500 Job creates would cost the leader its Lease.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from paraflow.models import parse_time
from paraflow.planning.lease import Conflict, Record

MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class LeaseStore:
    def __init__(self, api_client: client.ApiClient, namespace: str, name: str, *, request_timeout: float) -> None:
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.timeout = request_timeout
        # Labels and annotations others put on the Lease, kept across our writes.
        self.marks: dict[str, Any] = {}

    def get(self) -> tuple[Record, str] | None:
        try:
            response: Any = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        lease = json.loads(response.data)
        self.marks = {k: v for k, v in lease["metadata"].items() if k in ("labels", "annotations")}
        return _parse(lease)

    def create(self, record: Record) -> str:
        return self._write(self.api.create_namespaced_lease, self.namespace, self._body(record, None))

    def replace(self, record: Record, version: str) -> str:
        return self._write(self.api.replace_namespaced_lease, self.name, self.namespace, self._body(record, version))

    def _write(self, fn: Any, *args: Any) -> str:
        try:
            response = fn(*args, _preload_content=False, _request_timeout=self.timeout)
        except ApiException as e:
            if e.status == 409:
                raise Conflict(str(e.reason)) from e
            raise
        version: str = json.loads(response.data)["metadata"]["resourceVersion"]
        return version

    def _body(self, record: Record, version: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {**self.marks, "name": self.name, "namespace": self.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        spec = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.lease_duration_seconds,
            "acquireTime": _time(record.acquire_time),
            "renewTime": _time(record.renew_time),
            "leaseTransitions": record.transitions,
        }
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).strftime(MICROTIME)


def _parse(lease: dict[str, Any]) -> tuple[Record, str]:
    spec = lease.get("spec") or {}
    record = Record(
        holder=spec.get("holderIdentity") or "",
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=_parse_time(spec.get("acquireTime")),
        renew_time=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )
    return record, lease["metadata"]["resourceVersion"]


def _parse_time(value: str | None) -> dt.datetime | None:
    """Timestamps are for people (decisions use our own clock): one written oddly by hand is dropped."""
    try:
        return parse_time(value)
    except ValueError:
        return None
