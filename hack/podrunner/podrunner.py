"""Test pod runner: a small kubelet stand-in for the local test cluster. TEST INFRASTRUCTURE.

It registers one Ready Node, keeps its Lease fresh, and runs every container of every pod bound
to that node as a local process, so Job pods on the local control plane really execute and data
really flows (e.g. into MinIO). What it does, and what it deliberately does not:

- The image name is mapped to a local program through ``images.yaml`` (nothing is pulled).
- Env is resolved like the kubelet does: ``value`` (with ``$(VAR)`` expansion), ``secretKeyRef``,
  ``configMapKeyRef``, ``fieldRef`` (name, namespace, uid, labels, annotations - which gives
  Indexed Jobs their ``JOB_COMPLETION_INDEX`` - node name, pod and host IP) and ``envFrom``.
  A missing secret or key leaves the pod Pending with ``CreateContainerConfigError``.
- Status goes Pending -> Running -> Succeeded/Failed with the real exit code of each container.
- The pod's ServiceAccount token (unless ``automountServiceAccountToken: false``) is requested
  with the TokenRequest API, bound to the pod, and handed to the process as a kubeconfig file
  in ``KUBECONFIG`` (in-cluster config needs fixed paths a shared host cannot give each pod), so
  a pod acts with exactly its ServiceAccount's rights.
- Logs go to ``<log-dir>/<namespace>_<pod>_<container>.log``, and the node serves them the way a
  kubelet does (``GET /containerLogs/<ns>/<pod>/<container>`` over HTTPS on the node's kubelet
  port), so ``kubectl logs`` works.
- Deleting a pod sends SIGTERM to its process group, SIGKILL after the grace period (capped at
  10 s), marks it Failed if it was still running, then removes the pod object.
- Volumes, probes, resource limits, init containers and in-place restarts are not emulated;
  ``restartPolicy: OnFailure`` behaves like ``Never``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import fnmatch
import http.server
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("podrunner")
LEASE_SECONDS = 40
MAX_GRACE_SECONDS = 10
STATUS_RETRY_SECONDS = 600
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConfigError(Exception):
    """The pod cannot start yet; reported as a waiting reason, like the kubelet does."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ImageEntry:
    match: str
    path: list[str]
    entrypoint: list[str]


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    deleting: bool = False
    finished: bool = False


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names expand, unknown stay as written, $$ is $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return VAR_REF.sub(sub, value)


class PodRunner:
    def __init__(self, node: str, images: list[ImageEntry], log_dir: Path, kubelet_port: int = 0) -> None:
        self.node = node
        self.kubelet_port = kubelet_port
        self.images = images
        self.log_dir = log_dir
        self.core = client.CoreV1Api()
        self.coord = client.CoordinationV1Api()
        self.pods: dict[str, RunningPod] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    # ---- node registration -------------------------------------------------------------
    def register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                    "paraflow.dev/test-node": "podrunner",
                },
            },
        }
        try:
            self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        self.update_node_status()

    def update_node_status(self) -> None:
        cap = {"cpu": "64", "memory": "256Gi", "pods": "1000"}
        ts = now()
        status = {
            "status": {
                "capacity": cap,
                "allocatable": cap,
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
                "nodeInfo": {
                    "kubeletVersion": "podrunner",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "podrunner://0",
                },
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "PodRunnerReady",
                        "message": "test pod runner is running",
                        "lastHeartbeatTime": ts,
                        "lastTransitionTime": ts,
                    },
                ],
            }
        }
        self.core.patch_node_status(self.node, status)

    def heartbeat_loop(self) -> None:
        ticks = 0
        while not self.stopping.wait(0 if ticks == 0 else 10):
            try:
                self.renew_lease()
                if ticks % 4 == 0:
                    self.update_node_status()
            except Exception:  # a missed beat is retried in 10 s; the lease lasts 40 s
                log.exception("heartbeat failed")
            ticks += 1

    def renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.node,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        try:
            self.coord.patch_namespaced_lease(self.node, "kube-node-lease", {"spec": spec})
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease(
                "kube-node-lease",
                {"metadata": {"name": self.node}, "spec": spec},
            )

    # ---- pod lifecycle -----------------------------------------------------------------
    def watch_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node}")
                for pod in pods.items:
                    self.handle(pod)
                w = watch.Watch()
                for ev in w.stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=f"spec.nodeName={self.node}",
                    resource_version=pods.metadata.resource_version,
                    timeout_seconds=60,
                ):
                    if ev["type"] == "DELETED":
                        self.kill(ev["object"].metadata.uid, MAX_GRACE_SECONDS)
                    else:
                        self.handle(ev["object"])
                    if self.stopping.is_set():
                        break
            except Exception:  # the watch is re-listed from scratch; pods are keyed by uid
                log.exception("pod watch failed; re-listing")
                time.sleep(1)

    def handle(self, pod: Any) -> None:
        uid = pod.metadata.uid
        if pod.metadata.deletion_timestamp is not None:
            threading.Thread(target=self.terminate, args=(pod,), daemon=True).start()
            return
        if pod.status.phase in ("Succeeded", "Failed"):
            return
        with self.lock:
            if uid in self.pods:
                return
            self.pods[uid] = RunningPod(uid, pod.metadata.namespace, pod.metadata.name)
        threading.Thread(target=self.run_pod, args=(pod,), daemon=True).start()

    def run_pod(self, pod: Any) -> None:
        state = self.pods[pod.metadata.uid]
        while True:
            try:
                launches = [self.prepare(pod, c) for c in pod.spec.containers]
                break
            except ConfigError as e:
                self.patch_waiting(pod, e.reason, str(e))
                if self.stopping.wait(3) or state.deleting:
                    return
        for container, argv, env, cwd in launches:
            logfile = self.log_dir / f"{pod.metadata.namespace}_{pod.metadata.name}_{container.name}.log"
            with open(logfile, "ab") as out:
                state.processes[container.name] = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        started = now()
        self.patch_status(
            pod,
            {
                "phase": "Running",
                "startTime": started,
                "podIP": "127.0.0.1",
                "hostIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "hostIPs": [{"ip": "127.0.0.1"}],
                "conditions": self.conditions(ready=True),
                "containerStatuses": [
                    self.container_status(c, pod, {"running": {"startedAt": started}}) for c in pod.spec.containers
                ],
            },
        )
        codes = {name: p.wait() for name, p in state.processes.items()}
        state.finished = True
        if state.deleting:
            return
        finished = now()
        self.patch_status(
            pod,
            {
                "phase": "Succeeded" if all(c == 0 for c in codes.values()) else "Failed",
                "conditions": self.conditions(ready=False),
                "containerStatuses": [
                    self.container_status(
                        c,
                        pod,
                        {
                            "terminated": {
                                "exitCode": codes[c.name],
                                "reason": "Completed" if codes[c.name] == 0 else "Error",
                                "startedAt": started,
                                "finishedAt": finished,
                            }
                        },
                    )
                    for c in pod.spec.containers
                ],
            },
        )
        log.info("pod %s/%s exited %s", pod.metadata.namespace, pod.metadata.name, codes)

    def terminate(self, pod: Any) -> None:
        grace = min(pod.metadata.deletion_grace_period_seconds or 0, MAX_GRACE_SECONDS)
        state = self.pods.get(pod.metadata.uid)
        was_running = state is not None and not state.finished and bool(state.processes)
        self.kill(pod.metadata.uid, grace)
        if was_running:
            # Since PodDisruptionConditions the kubelet marks a pod it stopped as Failed; the
            # Job controller waits for that before it replaces the pod (podReplacementPolicy).
            try:
                self.patch_status(
                    pod,
                    {
                        "phase": "Failed",
                        "conditions": self.conditions(ready=False),
                        "containerStatuses": [
                            self.container_status(
                                c,
                                pod,
                                {
                                    "terminated": {
                                        "exitCode": 137,
                                        "reason": "Killed",
                                        "finishedAt": now(),
                                    }
                                },
                            )
                            for c in pod.spec.containers
                        ],
                    },
                )
            except ApiException as e:
                if e.status != 404:
                    raise
        try:
            # Grace 0 must be in the body: with a body, the apiserver ignores the query parameters.
            self.core.delete_namespaced_pod(
                pod.metadata.name,
                pod.metadata.namespace,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=pod.metadata.uid)
                ),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def kill(self, uid: str, grace: float) -> None:
        with self.lock:
            state = self.pods.get(uid)
        if state is None:
            return
        state.deleting = True
        procs = [p for p in state.processes.values() if p.poll() is None]
        for p in procs:
            with _ignore(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with _ignore(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def shutdown(self) -> None:
        self.stopping.set()
        for uid in list(self.pods):
            self.kill(uid, 2)

    # ---- container launch --------------------------------------------------------------
    def prepare(self, pod: Any, c: Any) -> tuple[Any, list[str], dict[str, str], str]:
        image = self.image_for(c.image)
        env = self.resolve_env(pod, c)
        command = [expand(a, env) for a in (c.command or image.entrypoint)]
        args = [expand(a, env) for a in (c.args or [])]
        if not command and not args:
            raise ConfigError(
                "CreateContainerError",
                f"image {c.image!r} has no entrypoint and the container no command",
            )
        scratch = self.log_dir / "work" / f"{pod.metadata.namespace}_{pod.metadata.name}"
        scratch.mkdir(parents=True, exist_ok=True)
        path = ":".join([*image.path, os.environ.get("PATH", "/usr/bin:/bin")])
        base = {
            "PATH": path,
            "HOME": str(scratch),
            "HOSTNAME": pod.spec.hostname or pod.metadata.name,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        if pod.spec.automount_service_account_token is not False:
            base["KUBECONFIG"] = self.service_account_kubeconfig(pod, scratch)
        return c, [*command, *args], {**base, **env}, str(scratch)

    def service_account_kubeconfig(self, pod: Any, scratch: Path) -> str:
        account = pod.spec.service_account_name or "default"
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=3600,
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            )
        )
        try:
            token = self.core.create_namespaced_service_account_token(account, pod.metadata.namespace, request)
        except ApiException as e:
            raise ConfigError(
                "CreateContainerConfigError", f"cannot get a token for ServiceAccount {account}: {e.reason}"
            ) from e
        conf = client.Configuration.get_default_copy()
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "pod",
            "clusters": [
                {"name": "cluster", "cluster": {"server": conf.host, "certificate-authority": conf.ssl_ca_cert}}
            ],
            "users": [{"name": account, "user": {"token": token.status.token}}],
            "contexts": [
                {"name": "pod", "context": {"cluster": "cluster", "user": account, "namespace": pod.metadata.namespace}}
            ],
        }
        path = scratch / "serviceaccount.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        path.chmod(0o600)
        return str(path)

    def image_for(self, image: str) -> ImageEntry:
        for entry in self.images:
            if fnmatch.fnmatchcase(image, entry.match):
                return entry
        raise ConfigError("ErrImageNeverPull", f"image {image!r} is not mapped in the pod runner's images.yaml")

    def resolve_env(self, pod: Any, c: Any) -> dict[str, str]:
        ns = pod.metadata.namespace
        env: dict[str, str] = {}
        for src in c.env_from or []:
            data = (
                self.secret_data(ns, src.secret_ref.name, src.secret_ref.optional)
                if src.secret_ref
                else self.configmap_data(ns, src.config_map_ref.name, src.config_map_ref.optional)
            )
            env.update({f"{src.prefix or ''}{k}": v for k, v in data.items()})
        for var in c.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            ref = var.value_from
            if ref.secret_key_ref is not None:
                value = self.secret_data(ns, ref.secret_key_ref.name, ref.secret_key_ref.optional).get(
                    ref.secret_key_ref.key
                )
                if value is None and not ref.secret_key_ref.optional:
                    raise ConfigError(
                        "CreateContainerConfigError",
                        f"couldn't find key {ref.secret_key_ref.key} in Secret {ns}/{ref.secret_key_ref.name}",
                    )
            elif ref.config_map_key_ref is not None:
                value = self.configmap_data(ns, ref.config_map_key_ref.name, ref.config_map_key_ref.optional).get(
                    ref.config_map_key_ref.key
                )
            elif ref.field_ref is not None:
                value = field_value(pod, ref.field_ref.field_path)
            else:
                value = None
            if value is not None:
                env[var.name] = value
        return env

    def secret_data(self, ns: str, name: str, optional: bool | None) -> dict[str, str]:
        try:
            secret = self.core.read_namespaced_secret(name, ns)
        except ApiException as e:
            if e.status == 404 and optional:
                return {}
            if e.status == 404:
                raise ConfigError("CreateContainerConfigError", f'secret "{name}" not found') from e
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def configmap_data(self, ns: str, name: str, optional: bool | None) -> dict[str, str]:
        try:
            return dict(self.core.read_namespaced_config_map(name, ns).data or {})
        except ApiException as e:
            if e.status == 404 and optional:
                return {}
            if e.status == 404:
                raise ConfigError("CreateContainerConfigError", f'configmap "{name}" not found') from e
            raise

    # ---- status helpers ----------------------------------------------------------------
    def conditions(self, ready: bool) -> list[dict[str, str]]:
        ts = now()
        flag = "True" if ready else "False"
        return [
            {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
            {"type": "Ready", "status": flag, "lastTransitionTime": ts},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": ts},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
        ]

    @staticmethod
    def container_status(c: Any, pod: Any, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": c.name,
            "image": c.image,
            "imageID": f"podrunner://{c.image}",
            "ready": "running" in state,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    def patch_waiting(self, pod: Any, reason: str, message: str) -> None:
        log.warning("pod %s/%s waiting: %s: %s", pod.metadata.namespace, pod.metadata.name, reason, message)
        self.patch_status(
            pod,
            {
                "containerStatuses": [
                    self.container_status(c, pod, {"waiting": {"reason": reason, "message": message}})
                    for c in pod.spec.containers
                ]
            },
        )

    def patch_status(self, pod: Any, status: dict[str, Any]) -> None:
        """Like the kubelet, keeps trying through an apiserver restart: a lost final status
        would leave the pod Running forever."""
        delay, deadline = 0.5, time.monotonic() + STATUS_RETRY_SECONDS
        while True:
            try:
                self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})
                return
            except ApiException as e:
                if e.status == 404:  # the pod is gone: nothing left to report to
                    return
                if e.status < 500 and e.status != 429:
                    raise
                problem: Exception = e
            except (urllib3.exceptions.HTTPError, OSError) as e:
                problem = e
            if time.monotonic() > deadline or self.stopping.is_set():
                raise problem
            log.warning(
                "status of %s/%s not written (%s); retrying",
                pod.metadata.namespace,
                pod.metadata.name,
                type(problem).__name__,
            )
            time.sleep(delay)
            delay = min(delay * 2, 10)


def serve_logs(log_dir: Path, port: int, cert: str, key: str) -> None:
    """The one kubelet endpoint the apiserver proxies for ``kubectl logs``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/<namespace>/<pod>/<container> is served")
                return
            path = log_dir / f"{parts[1]}_{parts[2]}_{parts[3]}.log"
            if not path.exists():
                self.send_error(404, f"no log for {parts[1]}/{parts[2]}/{parts[3]}")
                return
            data = path.read_bytes()
            tail = urllib.parse.parse_qs(url.query).get("tailLines")
            if tail:
                data = b"".join(data.splitlines(keepends=True)[-int(tail[0]) :])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(fmt, *args)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def field_value(pod: Any, path: str) -> str | None:
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (getattr(pod.metadata, m.group(1)) or {}).get(m.group(2))
    simple = {
        "metadata.name": pod.metadata.name,
        "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    return simple.get(path)


class _ignore:
    def __init__(self, *exc: type[BaseException]) -> None:
        self.exc = exc

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        return et is not None and issubclass(et, self.exc)


def load_images(path: Path) -> list[ImageEntry]:
    venv = sys.prefix
    entries = yaml.safe_load(path.read_text())
    return [
        ImageEntry(
            e["match"],
            [p.replace("{venv}", venv) for p in e.get("path", [])],
            list(e.get("entrypoint", [])),
        )
        for e in entries
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--node-name", default="podrunner")
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--log-dir", type=Path, required=True)
    ap.add_argument("--kubelet-port", type=int, default=0, help="serve container logs here (0: do not)")
    ap.add_argument("--tls-cert", help="serving certificate for the kubelet port")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    conf = client.Configuration.get_default_copy()
    conf.connection_pool_maxsize = 32  # pods start and finish in parallel threads
    client.Configuration.set_default(conf)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    runner = PodRunner(args.node_name, load_images(args.images), args.log_dir, args.kubelet_port)
    if args.kubelet_port:
        serve_logs(args.log_dir, args.kubelet_port, args.tls_cert, args.tls_key)
    runner.register_node()
    signal.signal(signal.SIGTERM, lambda *_: (runner.shutdown(), sys.exit(0)))
    threading.Thread(target=runner.heartbeat_loop, daemon=True).start()
    log.info("pod runner serving node %s", args.node_name)
    runner.watch_loop()


if __name__ == "__main__":
    main()
