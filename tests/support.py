"""Helpers shared by the integration and e2e tiers (no fixtures here, see conftest.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from paraflow import constants as c

T = TypeVar("T")

# Environment the tiers need; hack/cluster.sh env prints it for the local cluster.
STORAGE_ENV = (
    "PARAFLOW_TEST_S3_ENDPOINT",
    "PARAFLOW_TEST_S3_ENDPOINT_2",
    "PARAFLOW_TEST_S3_ACCESS_KEY",
    "PARAFLOW_TEST_S3_SECRET_KEY",
)
REQUIRED_ENV = ("KUBECONFIG", *STORAGE_ENV)


def require_env(names: tuple[str, ...] = REQUIRED_ENV) -> dict[str, str]:
    """Missing components fail the test, never skip it: a skipped e2e test is a failed one."""
    missing = [k for k in names if not os.environ.get(k)]
    if missing:
        raise RuntimeError(
            f"test environment incomplete, missing {missing}: run `make test`, or "
            f'`hack/cluster.sh up && eval "$(hack/cluster.sh env)"` first'
        )
    return {k: os.environ[k] for k in names}


def namespace_prefix() -> str:
    """Test namespaces start with this: ``t-``, or ``t<N>-`` in pytest-xdist worker N, whose own
    operator watches only ``t<N>-*`` (two workers' operators never act on one workflow)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"t{worker.removeprefix('gw')}-" if worker else "t-"


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
    """Installs the generated CRDs (as users do with kubectl apply -f crds/) and waits until served."""
    import yaml

    from paraflow.crdgen import FOLDERS, SCHEDULE_FILE, WORKFLOW_FILE

    ext = client.ApiextensionsV1Api(kube)
    for file in (WORKFLOW_FILE, SCHEDULE_FILE):
        body = yaml.safe_load((FOLDERS[0] / file).read_text())
        name = body["metadata"]["name"]

        def apply(body: dict[str, Any] = body, name: str = name) -> bool:
            """One create-or-replace; False when another pytest-xdist worker's write came between."""
            try:
                current = ext.read_custom_resource_definition(name)
                ext.replace_custom_resource_definition(
                    name,
                    {**body, "metadata": {**body["metadata"], "resourceVersion": current.metadata.resource_version}},
                )
            except client.exceptions.ApiException as e:
                if e.status == 409:
                    return False
                if e.status != 404:
                    raise
                try:
                    ext.create_custom_resource_definition(body)
                except client.exceptions.ApiException as created:
                    if created.status != 409:
                        raise
                    return False
            return True

        wait_for(apply, 30, f"the CRD {name} to be written", interval=0.2)

        def established(name: str = name) -> bool:
            status = ext.read_custom_resource_definition(name).status
            return any(c.type == "Established" and c.status == "True" for c in (status.conditions or []))

        wait_for(established, 30, f"the CRD {name} to be established")


def operator_writes(audit_log: Path, since: dt.datetime) -> list[float]:
    """Times (seconds) at which the apiserver received a write from the operator's user agent
    (the local cluster's audit log records every write to the operator's resources)."""
    return sorted(at for at, _ in operator_writes_by_replica(audit_log, since))


def operator_writes_by_replica(audit_log: Path, since: dt.datetime) -> list[tuple[float, str]]:
    """(time, replica) of each such write: the user agent names the replica that sent it."""
    found = []
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        agent = entry.get("userAgent", "")
        if not agent.startswith(f"{c.USER_AGENT_PRODUCT}/"):
            continue
        received = dt.datetime.fromisoformat(entry["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if received >= since:
            found.append((received.timestamp(), agent.partition("(")[2].rstrip(")")))
    return sorted(found)


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of sorted ``times`` inside any interval of length ``window``."""
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most


@dataclass(frozen=True)
class Handover:
    old: str
    new: str
    gap_seconds: float  # from the old holder's last write of the Lease to the new holder's first
    released: bool  # the old holder freed it (graceful stop) rather than letting it run out
    at: float  # (epoch seconds) the old holder's last write of the Lease


class LeaseWatch:
    """Records every write of one Lease (when it was seen, epoch seconds, and its holder) from a watch."""

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name
        self.writes: list[tuple[float, str]] = []
        self.watch = watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        api = client.CoordinationV1Api()
        selector = f"metadata.name={self.name}"
        with contextlib.suppress(ProtocolError):  # stop() closes the stream under it
            for event in self.watch.stream(
                api.list_namespaced_lease, self.namespace, field_selector=selector, timeout_seconds=3600
            ):
                self.writes.append((time.time(), event["object"].spec.holder_identity or ""))

    def handovers(self) -> list[Handover]:
        found: list[Handover] = []
        last_holder, last_at, released = "", 0.0, False
        for at, holder in self.writes:
            if holder and last_holder and holder != last_holder:
                found.append(Handover(last_holder, holder, at - last_at, released, last_at))
            if holder:
                last_holder, last_at, released = holder, at, False
            else:
                last_at, released = at, True
        return found

    def stop(self) -> None:
        self.watch.stop()


class PartitionJobWatch:
    """Watches a workflow's partition Jobs: the most ever unfinished at once, and when
    (monotonic) each Job name first appeared."""

    def __init__(self, namespace: str, workflow_name: str) -> None:
        self.namespace, self.selector = (
            namespace,
            f"{c.LABEL_WORKFLOW}={workflow_name},{c.LABEL_ROLE}={c.ROLE_PARTITION}",
        )
        self.unfinished: set[str] = set()
        self.seen: dict[str, float] = {}
        self.most_unfinished = 0
        self.watch = watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        stream = self.watch.stream(
            client.BatchV1Api().list_namespaced_job, self.namespace, label_selector=self.selector, timeout_seconds=600
        )
        with contextlib.suppress(ProtocolError):  # stop() closes the stream under it
            for event in stream:
                self._record(event)

    def _record(self, event: dict[str, Any]) -> None:
        job = event["object"]
        name = job.metadata.name
        self.seen.setdefault(name, time.monotonic())
        done = any(x.status == "True" and x.type in ("Complete", "Failed") for x in (job.status.conditions or []))
        if done or event["type"] == "DELETED":
            self.unfinished.discard(name)
        else:
            self.unfinished.add(name)
        self.most_unfinished = max(self.most_unfinished, len(self.unfinished))

    def first_new_after(self, moment: float) -> float | None:
        later = [t for t in self.seen.values() if t > moment]
        return min(later) if later else None

    def stop(self) -> None:
        self.watch.stop()


class Relay:
    """A TCP relay to ``host:port`` that can be cut (every connection reset, new ones refused, as a
    process partitioned from the server sees it) or can corrupt what the server sends: with
    ``flip``, every occurrence of those bytes in what it sends gets one bit flipped."""

    def __init__(self, host: str, port: int, flip: bytes = b"") -> None:
        self.target = (host, port)
        self.flip = flip
        self.flipped = 0
        # On the server's own address when it is one of this host's (a local cluster), so a TLS
        # certificate still matches the address its clients dial.
        try:
            self.server = socket.create_server((host, 0))
        except OSError:
            self.server = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.server.getsockname()[:2]
        self.open = True
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept(self) -> None:
        while True:
            conn, _ = self.server.accept()
            if not self.open:
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [conn, upstream]
            threading.Thread(target=self._pipe, args=(conn, upstream, b""), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, conn, self.flip), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, flip: bytes) -> None:
        # The last len(flip) - 1 bytes wait for the next read (a match may span two reads), and
        # are sent anyway when nothing more comes for a moment.
        keep = max(len(flip) - 1, 0)
        held = b""
        src.settimeout(0.05 if flip else None)
        try:
            while True:
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    dst.sendall(held)
                    held = b""
                    continue
                if not data:
                    break
                data = held + data
                while flip and flip in data:
                    at = data.index(flip)
                    data = data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]
                    self.flipped += 1
                held, data = (data[len(data) - keep :], data[: len(data) - keep]) if keep else (b"", data)
                dst.sendall(data)
            dst.sendall(held)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def cut(self) -> None:
        self.open = False
        for conn in self.conns:
            conn.close()
        self.conns.clear()

    def heal(self) -> None:
        self.open = True
