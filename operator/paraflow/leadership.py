"""One active replica: a client-go style elector over a Lease, and the write gate it keeps.

Every replica watches and indexes (a hot standby: it holds every workflow and Job in memory), but
only the holder of the Lease runs reconcile passes, and every write the operator makes (to the
apiserver or to MinIO) first passes ``Elector.fence``. The rules are in ``planning.lease``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from paraflow.planning.lease import (
    Conflict,
    NotLeading,
    Observed,
    Record,
    Timings,
    claim,
    gate_closes_at,
    may_hold,
    next_try_in,
    released,
)

log = logging.getLogger(__name__)
OnChange = Callable[[bool], Awaitable[None]]


class LeaseBackend(Protocol):
    def get(self) -> tuple[Record, str] | None: ...
    def create(self, record: Record) -> str: ...
    def replace(self, record: Record, version: str) -> str: ...


class Elector:
    def __init__(
        self,
        store: LeaseBackend,
        identity: str,
        timings: Timings,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store, self.identity, self.timings = store, identity, timings
        self.clock, self.wall = clock, wall
        self.observed: Observed | None = None
        # Start of our last successful write of the Lease, while we hold it (read by writer threads).
        self.renew_started: float | None = None
        self._unreachable = False

    def leading(self) -> bool:
        started = self.renew_started
        return started is not None and self.clock() < gate_closes_at(started, self.timings)

    def fence(self) -> None:
        """Raises unless this replica holds the Lease now: called right before every write."""
        if not self.leading():
            raise NotLeading(f"{self.identity} does not hold the Lease: the write is dropped")

    def try_acquire_or_renew(self) -> bool:
        started = self.clock()
        read = self.store.get()
        if read is None:
            self.observed = None
        else:
            record, version = read
            if self.observed is None or self.observed.version != version:
                self.observed = Observed(record, version, self.clock())
            if record.holder != self.identity:
                self.renew_started = None  # taken over or released: shut the gate now, not at the deadline
        if not may_hold(self.observed, self.identity, self.clock()):
            return False
        current = None if self.observed is None else self.observed.record
        record = claim(current, self.identity, self.wall(), self.timings)
        try:
            if self.observed is None:
                version = self.store.create(record)
            else:
                version = self.store.replace(record, self.observed.version)
        except Conflict:
            return False
        self.observed = Observed(record, version, self.clock())
        self.renew_started = started
        return True

    def release(self) -> None:
        """On a graceful exit, after every pass stopped: the gate shuts, then the Lease is freed."""
        was_leading, observed = self.leading(), self.observed
        self.renew_started = None
        if not was_leading or observed is None:
            return
        try:
            self.store.replace(released(observed.record, self.wall()), observed.version)
            log.info("released the Lease: a standby takes over at its next try")
        except Exception as e:  # the standby then waits out the lease instead
            log.warning("could not release the Lease (%s): a standby takes over when it expires", e)

    async def run(self, on_change: OnChange) -> None:
        """Try to take or renew the Lease every retry period, forever; ``on_change(leading)``
        is awaited on every change, and the loss is announced as soon as the gate shuts,
        even while a request to the apiserver hangs."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="lease")
        loop = asyncio.get_running_loop()
        announced = False
        try:
            while True:
                announced = await self._watch(loop.run_in_executor(executor, self._attempt), announced, on_change)
                delay = next_try_in(
                    self.observed, self.identity, self.clock(), self.timings, announced, random.random()
                )
                pause = asyncio.ensure_future(asyncio.sleep(delay))
                announced = await self._watch(pause, announced, on_change)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def _watch(self, pending: asyncio.Future[None], announced: bool, on_change: OnChange) -> bool:
        try:
            while True:
                started = self.renew_started
                timeout = max(0.0, gate_closes_at(started, self.timings) - self.clock()) if started else None
                done, _ = await asyncio.wait({pending}, timeout=timeout if announced else None)
                leading = self.leading()
                if leading != announced:
                    log.info("%s the Lease as %s", "holding" if leading else "lost", self.identity)
                    await on_change(leading)
                    announced = leading
                if done:
                    return announced
        finally:
            pending.cancel()

    def _attempt(self) -> None:
        try:
            self.try_acquire_or_renew()
        except Exception as e:
            if not self._unreachable:
                log.warning("cannot read or write the Lease (%s); retrying every %ss", e, self.timings.retry_period)
            self._unreachable = True
            return
        self._unreachable = False
