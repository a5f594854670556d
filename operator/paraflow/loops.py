"""One asyncio task per workflow that runs reconcile passes when woken, or when due.

Events (the workflow's own, and its Jobs') only *wake* the loop; the pass itself always reads
the freshest body and Job index. Wakes that arrive during a pass coalesce into one more pass,
and a short debounce folds a burst of Job events into a single pass.

Only the replica holding the Lease runs passes (``activate``/``deactivate``); a standby keeps
every workflow's latest body, so it starts all loops the moment it takes over.

Why not a kopf daemon: a daemon needs a finalizer on every workflow, so deleting one hangs while
the operator is down. A plain task per workflow, started from the workflow's events, needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paraflow import metrics
from paraflow.planning.lease import NotLeading
from paraflow.planning.planner import JobFacts
from paraflow.planning.retry import doubling_backoff

log = logging.getLogger(__name__)
# A pass returns the seconds until the next one is due without an event; None: only an event.
Pass = Callable[[Mapping[str, Any], Sequence[JobFacts]], Awaitable[float | None]]
Jobs = Callable[[str], Sequence[JobFacts]]


@dataclass
class _Loop:
    body: Mapping[str, Any]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class WorkflowLoops:
    def __init__(
        self,
        run_pass: Pass,
        jobs_of: Jobs,
        debounce: float,
        *,
        backoff: float,
        backoff_max: float,
        on_forget: Callable[[str], None] = lambda uid: None,
    ) -> None:
        self.run_pass = run_pass
        self.on_forget = on_forget
        self.jobs_of = jobs_of
        self.debounce = debounce
        self.backoff, self.backoff_max = backoff, backoff_max
        self.loops: dict[str, _Loop] = {}
        self.active = False
        # The context of the latest kopf handler that observed a workflow: passes need it (kopf
        # posts Events through context variables it sets for its handlers), also when they are
        # started by taking the Lease, from the elector's own task.
        self.context: contextvars.Context | None = None

    def observe(self, uid: str, body: Mapping[str, Any]) -> None:
        """The workflow was seen (created, changed, listed at start-up): keep its loop running."""
        self.context = contextvars.copy_context()
        loop = self.loops.get(uid)
        if loop is None:
            loop = self.loops[uid] = _Loop(body)
        loop.body = body
        self._start(uid, loop)
        loop.wake.set()

    def activate(self) -> None:
        """This replica leads now: every known workflow gets a pass at once."""
        self.active = True
        for uid, loop in self.loops.items():
            self._start(uid, loop)
            loop.wake.set()

    async def deactivate(self) -> None:
        """This replica no longer leads: stop every pass, keep the bodies, drop per-run caches
        (the next leader may change anything meanwhile)."""
        self.active = False
        for uid, loop in list(self.loops.items()):  # events may add or remove loops meanwhile
            await self._cancel(loop)
            self._drop_state(uid)

    def _start(self, uid: str, loop: _Loop) -> None:
        if self.active and (loop.task is None or loop.task.done()):
            loop.task = asyncio.create_task(self._run(uid, loop), name=f"paraflow-workflow-{uid}", context=self.context)

    def wake(self, uid: str) -> None:
        loop = self.loops.get(uid)
        if loop is not None:
            loop.wake.set()

    async def forget(self, uid: str) -> None:
        self._drop_state(uid)
        loop = self.loops.pop(uid, None)
        if loop is not None:
            await self._cancel(loop)

    def _drop_state(self, uid: str) -> None:
        metrics.observe(uid, None)
        self.on_forget(uid)

    @staticmethod
    async def _cancel(loop: _Loop) -> None:
        task, loop.task = loop.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        self.active = False  # an event arriving during shutdown starts nothing
        for uid in list(self.loops):
            await self.forget(uid)

    async def _run(self, uid: str, loop: _Loop) -> None:
        failures = 0
        delay: float | None
        while True:
            loop.wake.clear()
            try:
                metrics.PASSES.inc()
                delay = await self.run_pass(loop.body, self.jobs_of(uid))
                failures = 0
            except asyncio.CancelledError:
                raise
            except NotLeading:
                # The gate shut mid-pass. Usually deactivate() cancels this loop next; if a late
                # renewal reopened the gate, the next event runs a pass again.
                log.info("pass of %s stopped: this replica does not hold the Lease", uid)
                delay = None
            except Exception as e:
                metrics.API_ERRORS.labels(type(e).__name__).inc()
                failures += 1
                delay = doubling_backoff(self.backoff, failures, self.backoff_max)
                meta = loop.body.get("metadata", {})
                log.exception(
                    "reconcile of %s/%s failed (retry in %.1fs)", meta.get("namespace"), meta.get("name"), delay
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(loop.wake.wait(), timeout=delay)
            if failures == 0:
                await asyncio.sleep(self.debounce)
