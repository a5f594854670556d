"""A thin async face over the synchronous ``kubernetes`` client.

Every call runs in a bounded thread pool, so the kopf event loop is never blocked; writes pass
through one token bucket shared by all workflows, so a burst of 10,000 creates cannot flood the
apiserver. Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import json
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from paraflow import constants as c
from paraflow.k8s.podlogs import Tail
from paraflow.metrics import API_WRITES
from paraflow.reasons import Reason

T = TypeVar("T")
LOG_CHUNK = 64 * 1024


class TokenBucket:
    """At most ``rate`` acquisitions a second on average, ``burst`` at once."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate, self.capacity = rate, float(burst)
        self.clock, self.sleep = clock, sleep
        self.tokens, self.stamp = float(burst), clock()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await self.sleep((1 - self.tokens) / self.rate)


class SecretMissing(Exception):
    """The Secret (or one of its keys) the workflow names does not exist."""

    reason = Reason.SECRET_NOT_FOUND


class JobRefused(Exception):
    """The apiserver refused a child Job as invalid (a pod template naming a missing volume, ...):
    so would it every retry."""

    reason = Reason.JOB_REFUSED


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


class KubeApi:
    def __init__(
        self,
        api_client: client.ApiClient,
        threads: int,
        write_qps: float,
        *,
        write_burst: int,
        request_timeout: float,
        fence: Callable[[], float] = lambda: math.inf,
    ) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="kubeapi")
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        # Writes never retry inside the client: a retried write could reach the apiserver after
        # this replica's gate shut (a healed partition). A failed pass is retried by its loop.
        writer = client.ApiClient(copy.copy(api_client.configuration))
        writer.configuration.retries = 0
        writer.user_agent = api_client.user_agent
        self.writer = writer
        self.write_batch = client.BatchV1Api(writer)
        self.write_custom = client.CustomObjectsApi(writer)
        self.writes = TokenBucket(write_qps, write_burst)
        # One slot per thread: a call holding a slot starts at once. Writes take their token
        # only once they hold a slot; otherwise writes granted while every thread was busy
        # would queue in the pool and leave together, above the cap (seen in the apiserver's
        # audit log: 22 writes in one second under a cap allowing 18).
        self.slots = asyncio.Semaphore(threads)
        self.timeout = request_timeout
        # Raises unless this replica may write now (it holds the Lease), else returns how long
        # it still may; checked on the writing thread right before the request leaves, after
        # any wait for a token or a thread.
        self.fence = fence

    async def _send(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A write, paced by the token bucket. Its response is not used: skipping the client's
        model deserialisation saves most of the CPU a create costs (profiled at 1,000 partitions)."""

        def write() -> None:
            left = self.fence()
            API_WRITES.labels(verb).inc()
            # A request still unanswered when the gate shuts is abandoned, not left to land later.
            response = fn(*args, _preload_content=False, _request_timeout=min(self.timeout, left), **kwargs)
            # Read, not decoded: a response left unread keeps its connection out of the pool,
            # and every write then opened a TLS connection of its own (a handshake on both ends:
            # a quarter of the operator's CPU at 10,000 partitions, profiled, and the apiserver's).
            response.drain_conn()
            response.release_conn()

        async with self.slots:
            await self.writes.acquire()
            await asyncio.get_running_loop().run_in_executor(self.pool, write)

    async def offload(self, fn: Callable[..., T], *args: Any, writes: bool = False, **kwargs: Any) -> T:
        """Run a blocking storage call on the client threads; one that writes is fenced too (its
        writes are deterministic, the same from any leader, so one landing late changes nothing)."""

        def call() -> T:
            if writes:
                self.fence()
            return fn(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs.setdefault("_request_timeout", self.timeout)
        async with self.slots:
            return await asyncio.get_running_loop().run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    async def create_job(self, body: dict[str, Any]) -> bool:
        """True if created, False if a Job of that name already existed (an earlier pass made it);
        JobRefused, with the apiserver's words, if it refuses the Job as invalid."""
        try:
            await self._send("create", self._post_job, body["metadata"]["namespace"], body)
        except ApiException as e:
            if e.status == 409:
                return False
            if e.status in (400, 422):
                raise JobRefused(_api_message(e)) from e
            raise
        return True

    def _post_job(
        self, namespace: str, body: dict[str, Any], *, _preload_content: bool, _request_timeout: float
    ) -> Any:
        """``create_namespaced_job`` without its typed model: the client validates our dict into a
        V1Job and dumps it back to a dict before sending, a third of a create's CPU (profiled at
        10,000 partitions). The body is the dict the builders made, sent as it is; a refusal
        raises ApiException as the typed call does."""
        del _preload_content  # _send asks every write for it: the response is always left unread here
        request = self.writer.param_serialize(
            method="POST",
            resource_path="/apis/batch/v1/namespaces/{namespace}/jobs",
            path_params={"namespace": namespace},
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        raw = self.writer.call_api(*request, _request_timeout=_request_timeout).response
        if not 200 <= raw.status <= 299:
            raise ApiException.from_response(http_resp=raw, body=None, data=None)  # reads its body
        return raw

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        """Deletes the Job of that uid and, in the background, its pods; False if it was already
        gone, or the name is now another Job's (a re-created workflow's, say): that one stays."""
        try:
            await self._send(
                "delete",
                self.write_batch.delete_namespaced_job,
                name,
                namespace,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background"
                ),
            )
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        return True

    async def read_workflow(self, namespace: str, name: str, *, plural: str = c.PLURAL) -> dict[str, Any] | None:
        """The workflow (or another of our kinds, by ``plural``) as the apiserver holds it now (a
        quorum read, not a watch's copy); None if it is gone."""
        try:
            response: Any = await self._call(
                self.custom.get_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                namespace,
                plural,
                name,
                _preload_content=False,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        body: dict[str, Any] = json.loads(response.data)
        return body

    async def read_secret(self, namespace: str, name: str, keys: tuple[str, ...]) -> dict[str, str]:
        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as e:
            if e.status == 404:
                raise SecretMissing(f'Secret "{name}" not found in namespace "{namespace}"') from e
            raise
        data = secret.data or {}
        missing = [k for k in keys if k not in data]
        if missing:
            raise SecretMissing(f'Secret "{name}" has no key(s) {", ".join(missing)} (needs {", ".join(keys)})')
        return {k: base64.b64decode(data[k]).decode() for k in keys}

    async def job_events(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """Events the Job controller posted about one Job (FailedCreate carries admission refusals)."""
        selector = f"involvedObject.kind=Job,involvedObject.name={job}"
        return await self._list(self.core.list_namespaced_event, namespace, field_selector=selector)

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return await self._list(self.core.list_namespaced_pod, namespace, label_selector=f"job-name={job}")

    async def pod_log(self, namespace: str, pod: str, *, container: str, limit: int) -> Tail:
        """The tail of one container's log, streamed: a 50 MiB log never sits in memory."""

        def read() -> Tail:
            tail = Tail(limit)
            response: Any = self.core.read_namespaced_pod_log(
                pod, namespace, container=container, _preload_content=False, _request_timeout=self.timeout
            )
            try:
                for chunk in response.stream(LOG_CHUNK):
                    tail.feed(chunk)
            finally:
                response.release_conn()
            return tail

        async with self.slots:
            return await asyncio.get_running_loop().run_in_executor(self.pool, read)

    async def job_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """Kueue's Workload of one Job, which says why it is not admitted (none without Kueue)."""
        return await self._list(
            functools.partial(self.custom.list_namespaced_custom_object, c.KUEUE_GROUP, c.KUEUE_VERSION),
            namespace,
            "workloads",
            label_selector=f"{c.LABEL_KUEUE_JOB_UID}={job_uid}",
        )

    async def _list(self, fn: Callable[..., Any], namespace: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Items as plain dicts, as the apiserver sent them (no model round trip)."""
        response = await self._call(fn, namespace, *args, _preload_content=False, **kwargs)
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any], *, plural: str = c.PLURAL) -> None:
        await self._send(
            "patch",
            self.write_custom.patch_namespaced_custom_object_status,
            c.GROUP,
            c.VERSION,
            namespace,
            plural,
            name,
            {"status": status},
        )

    async def list_workflows(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        response: Any = await self._call(
            self.custom.list_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            namespace,
            c.PLURAL,
            label_selector=selector,
            _preload_content=False,
        )
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    async def create_workflow(self, body: dict[str, Any]) -> bool:
        """True if created, False if a workflow of that name already existed."""
        try:
            await self._send(
                "create",
                self.write_custom.create_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                body["metadata"]["namespace"],
                c.PLURAL,
                body,
            )
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    async def annotate_workflow(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        try:
            await self._send(
                "patch",
                self.write_custom.patch_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                name,
                {"metadata": {"annotations": annotations}},
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def delete_workflow(self, namespace: str, name: str, uid: str) -> None:
        try:
            await self._send(
                "delete",
                self.write_custom.delete_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                namespace,
                c.PLURAL,
                name,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background"
                ),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def close(self) -> None:
        """Waits for requests already sent: a leader frees its Lease only after its last write."""
        self.pool.shutdown(wait=True, cancel_futures=True)
