"""Lists, then watches, the operator's child Jobs and keeps a ``JobIndex`` of them.

Why not kopf's watch: kopf runs its whole per-event machinery (a body copy, a diff base, its
handler dispatch and logging) for each of the half-dozen status updates every Job gets, which
was a third of the operator's CPU at 10,000 partitions (profiled), on cores the control plane
needs. Here an event costs one JSON decode and a ``JobFacts``.

One thread per scope (a namespace, or all of them) reads the stream with the synchronous
client; each change is applied on the event loop, which is the index's only writer and reader.
``synced`` is set once every scope has been listed: passes wait for it, so the first pass after
a restart already sees every running Job and never exceeds maxConcurrency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from paraflow import constants as c
from paraflow.k8s.jobindex import JobIndex
from paraflow.planning.retry import doubling_backoff

log = logging.getLogger(__name__)
SELECTOR = c.LABEL_WORKFLOW_UID  # every Job the operator creates, and only those
PAGE = 500
GONE = 410
BACKOFF_SECONDS, BACKOFF_MAX_SECONDS = 1.0, 30.0


class JobWatch:
    def __init__(
        self,
        api_client: client.ApiClient,
        namespaces: Sequence[str | None],
        index: JobIndex,
        *,
        wake: Callable[[str], None],
        server_timeout: int,
        client_timeout: float,
    ) -> None:
        self.batch = client.BatchV1Api(api_client)
        self.scopes = list(dict.fromkeys(namespaces))  # `-n a -n a`: one watch
        self.index, self.wake = index, wake
        self.server_timeout, self.client_timeout = server_timeout, client_timeout
        self.synced = asyncio.Event()
        self._unsynced = set(self.scopes)
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for scope in self.scopes:
            name = f"paraflow-jobs-{scope or 'all'}"
            threading.Thread(target=self._run, args=(scope,), name=name, daemon=True).start()

    def stop(self) -> None:
        """The threads end at their stream's next event or timeout; nothing waits for them."""
        self._stopping.set()

    def _run(self, scope: str | None) -> None:
        failures = 0
        position = _Position()
        while not self._stopping.is_set():
            try:
                if position.version is None:
                    position.version = self._relist(scope)
                self._follow(scope, position)
                failures = 0  # a stream that ran its course (or asked for a relist)
            except Exception as e:  # whatever broke, a thread that ended would leave the index blind
                if isinstance(e, ApiException) and e.status == GONE:
                    position.version = None  # as an HTTP status rather than an event: list again
                failures += 1
                delay = doubling_backoff(BACKOFF_SECONDS, failures, BACKOFF_MAX_SECONDS)
                expected = isinstance(e, ApiException | urllib3.exceptions.HTTPError | OSError | ValueError)
                log.warning(
                    "watch of Jobs in %s failed (%s); again in %.0fs",
                    scope or "all namespaces",
                    e,
                    delay,
                    exc_info=not expected,
                )
                self._stopping.wait(delay)

    def _relist(self, scope: str | None) -> str:
        jobs: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = json.loads(self._request(scope, limit=PAGE, _continue=token).data)
            jobs.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
        self._on_loop(self._replace, scope, jobs)
        return str(page["metadata"]["resourceVersion"])

    def _follow(self, scope: str | None, position: _Position) -> None:
        """Applies the stream's events until it ends, keeping ``position`` at the last one seen
        (a broken stream resumes there); None when it is too old to resume from: list again."""
        response = self._request(
            scope,
            watch=True,
            resource_version=position.version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.server_timeout,
        )
        try:
            for lines in _batches(response):
                # The events that arrived together are applied in one call on the loop: one
                # wake-up of the event loop per read rather than per event (at 10,000 Jobs a busy
                # stream brings several per read).
                changes: list[tuple[str, dict[str, Any]]] = []
                try:
                    for line in lines:
                        event = json.loads(line)
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            if obj.get("code") == GONE:
                                position.version = None
                                return
                            raise ValueError(f"watch error {obj.get('code')}: {obj.get('message')}")
                        if kind != "BOOKMARK":
                            changes.append((kind, obj))
                        position.version = obj["metadata"]["resourceVersion"]
                finally:
                    if changes:  # those before an error still count: position is past them
                        self._on_loop(self._apply, changes)
                if self._stopping.is_set():
                    return
        finally:
            response.release_conn()

    def _request(self, scope: str | None, **kwargs: Any) -> Any:
        common: dict[str, Any] = {
            "label_selector": SELECTOR,
            "_preload_content": False,
            "_request_timeout": self.client_timeout,
        }
        if scope is None:
            return self.batch.list_job_for_all_namespaces(**common, **kwargs)
        return self.batch.list_namespaced_job(scope, **common, **kwargs)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed: the operator is exiting
            self._stopping.set()

    def _apply(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        woken: set[str] = set()
        for kind, job in changes:
            woken |= self.index.apply(kind, job)
        for owner in woken:
            self.wake(owner)

    def _replace(self, scope: str | None, jobs: list[dict[str, Any]]) -> None:
        for owner in self.index.replace(scope, jobs):
            self.wake(owner)
        self._unsynced.discard(scope)
        if not self._unsynced:
            self.synced.set()
        log.info("listed %d Job(s) in %s", len(jobs), scope or "all namespaces")


@dataclass
class _Position:
    """Where a scope's stream is: the resourceVersion to watch from (None: list first)."""

    version: str | None = None


def _batches(response: Any) -> Iterator[list[bytes]]:
    """The watch's newline-delimited JSON, one event per line, however the chunks fall: the
    whole lines each read completed, together."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines = [line for line in complete if line]
        if lines:
            yield lines
    if pending.strip():
        yield [pending]
