"""Helpers shared by the integration and e2e tiers (no fixtures here, see conftest.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kubernetes import client

from paraflow import constants as c

T = TypeVar("T")

# Environment the tiers need; hack/cluster.sh env prints it for the local cluster.
REQUIRED_ENV = (
    "KUBECONFIG",
    "PARAFLOW_TEST_S3_ENDPOINT",
    "PARAFLOW_TEST_S3_ENDPOINT_2",
    "PARAFLOW_TEST_S3_ACCESS_KEY",
    "PARAFLOW_TEST_S3_SECRET_KEY",
)


def require_env() -> dict[str, str]:
    """Missing components fail the test, never skip it: a skipped e2e test is a failed one."""
    missing = [k for k in REQUIRED_ENV if not os.environ.get(k)]
    if missing:
        raise RuntimeError(
            f"test environment incomplete, missing {missing}: run `make test`, or "
            f'`hack/cluster.sh up && eval "$(hack/cluster.sh env)"` first'
        )
    return {k: os.environ[k] for k in REQUIRED_ENV}


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Polls ``check`` until it returns something truthy; fails with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def install_crd(kube: client.ApiClient) -> None:
    """Installs the generated CRD (as users do with kubectl apply -f crds/) and waits until served."""
    import yaml

    from paraflow.crdgen import TARGETS

    ext = client.ApiextensionsV1Api(kube)
    body = yaml.safe_load(TARGETS[0].read_text())
    try:
        current = ext.read_custom_resource_definition(body["metadata"]["name"])
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(body["metadata"]["name"], body)
    except client.exceptions.ApiException as e:
        if e.status != 404:
            raise
        ext.create_custom_resource_definition(body)

    def established() -> bool:
        status = ext.read_custom_resource_definition(body["metadata"]["name"]).status
        return any(c.type == "Established" and c.status == "True" for c in (status.conditions or []))

    wait_for(established, 30, "the CRD to be established")


def operator_writes(audit_log: Path, since: dt.datetime) -> list[float]:
    """Times (seconds) at which the apiserver received a write from the operator's user agent
    (the local cluster's audit log records every write to the operator's resources)."""
    times = []
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        if not entry.get("userAgent", "").startswith(f"{c.USER_AGENT_PRODUCT}/"):
            continue
        received = dt.datetime.fromisoformat(entry["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if received >= since:
            times.append(received.timestamp())
    return sorted(times)


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of sorted ``times`` inside any interval of length ``window``."""
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most
