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
    takeover_in,
)

log = logging.getLogger(__name__)
OnChange = Callable[[bool], Awaitable[None]]
DELETED = ""  # the version we note for a Lease found deleted under another holder


def boot_clock() -> float:
    """Seconds since boot, counting time suspended (a paused VM resumes with its gate shut),
    where the platform has such a clock; otherwise the monotonic clock."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


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
        *,
        clock: Callable[[], float] = boot_clock,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store, self.identity, self.timings = store, identity, timings
        self.clock, self.wall = clock, wall
        self.observed: Observed | None = None
        # Start of our last successful write of the Lease, while we hold it (read by writer threads).
        self.renew_started: float | None = None
        # Not before then: a Lease we had to create may have been deleted under a holder that
        # can act until its renew deadline, which began before our create.
        self.acting_from = 0.0
        self._unreachable = False
        # The other holder this replica last said it waits for: said once per holder, not every try.
        self._waiting_for = ""

    def leading(self) -> bool:
        return self._gate_left() > 0

    def fence(self) -> float:
        """Raises unless this replica holds the Lease now, else returns the seconds its gate stays
        open: called right before every write."""
        left = self._gate_left()
        if left <= 0:
            raise NotLeading(f"{self.identity} does not hold the Lease: the write is dropped")
        return left

    def _gate_left(self) -> float:
        started, now = self.renew_started, self.clock()
        if started is None or now < self.acting_from:
            return 0.0
        return gate_closes_at(started, self.timings) - now

    def try_acquire_or_renew(self) -> bool:
        started = self.clock()
        read = self.store.get()
        if read is None:
            if self.observed is None or self.observed.record.holder in ("", self.identity):
                self.observed = None
            elif self.observed.version != DELETED:
                # Deleted by hand under another holder, who may have renewed after our last look
                # and may still act: wait out a whole lease from now, as if it had just renewed.
                self.observed = Observed(self.observed.record, DELETED, self.clock())
            self.renew_started = None  # ours was deleted: another replica may create it now
        else:
            record, version = read
            if self.observed is None or self.observed.version != version:
                self.observed = Observed(record, version, self.clock())
            if record.holder != self.identity:
                self.renew_started = None  # taken over or released: shut the gate now, not at the deadline
        if not may_hold(self.observed, self.identity, self.clock(), timings=self.timings):
            self._say_who_holds_it()
            return False
        current = None if read is None else read[0]
        record = claim(current, self.identity, self.wall(), timings=self.timings)
        try:
            version = self.store.create(record) if read is None else self.store.replace(record, read[1])
        except Conflict:
            self.renew_started = None  # someone wrote it since we read it: whoever it was, not us
            return False
        self.observed = Observed(record, version, self.clock())
        if read is None:
            self.acting_from = started + self.timings.renew_deadline
        self.renew_started = started
        return True

    def release(self) -> None:
        """On a graceful exit, after every pass and write stopped: the gate shuts, then the Lease
        is freed. A renewal that raced the release is read back and released once more."""
        was_leading, observed = self.leading(), self.observed
        self.renew_started = None
        if not was_leading or observed is None:
            return
        for _ in range(2):
            try:
                self.store.replace(released(observed.record, self.wall()), observed.version)
                log.info("released the Lease: a standby takes over at its next try")
                return
            except Conflict:
                read = self.store.get()
                if read is None or read[0].holder != self.identity:
                    return  # no longer ours to release
                observed = Observed(read[0], read[1], self.clock())
            except Exception as e:  # the standby then waits out the lease instead
                log.warning("could not release the Lease (%s): a standby takes over when it expires", e)
                return

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
                    self.observed,
                    self.identity,
                    self.clock(),
                    timings=self.timings,
                    leading=announced,
                    draw=random.random(),
                )
                pause = asyncio.ensure_future(asyncio.sleep(delay))
                announced = await self._watch(pause, announced, on_change)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    async def _watch(self, pending: asyncio.Future[None], announced: bool, on_change: OnChange) -> bool:
        try:
            while True:
                # Leading, wake when the gate shuts; not yet acting on a Lease we hold, when it opens.
                now = self.clock()
                if announced:
                    timeout: float | None = self._gate_left()
                elif self.renew_started is not None and now < self.acting_from:
                    timeout = self.acting_from - now
                else:
                    timeout = None
                done, _ = await asyncio.wait({pending}, timeout=timeout)
                leading = self.leading()
                if leading != announced:
                    log.info("%s the Lease as %s", "holding" if leading else "lost", self.identity)
                    announced = leading
                    try:
                        await on_change(leading)
                    except Exception:  # the election must go on whatever the reaction did
                        log.exception("reacting to %s the Lease failed", "holding" if leading else "losing")
                if done:
                    return announced
        finally:
            pending.cancel()

    def _say_who_holds_it(self) -> None:
        observed = self.observed
        if observed is None or observed.record.holder == self._waiting_for:
            return
        self._waiting_for = observed.record.holder
        left = takeover_in(observed, self.clock(), self.timings)
        log.info(
            "standing by as %s: the Lease is held by %s; taken over in %.0fs unless it renews",
            self.identity,
            observed.record.holder,
            left,
        )

    def _attempt(self) -> None:
        try:
            self.try_acquire_or_renew()
        except Exception as e:
            if not self._unreachable:
                log.warning("cannot read or write the Lease (%s); retrying every %ss", e, self.timings.retry_period)
            self._unreachable = True
            return
        self._unreachable = False
