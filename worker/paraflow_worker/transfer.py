"""A shard's item I/O with many requests in flight: reads fetched ahead of the processor, writes
uploaded behind it, both within one byte budget.

Object storage answers in 10-50 ms on a real cluster. One request at a time, a partition of 500
small items then waits 5-25 s on round trips with its CPU idle. Here ``concurrency`` requests are
in flight at once, and the bytes fetched but not yet read, or written but not yet uploaded, never
exceed ``budget_bytes``, however large the partition.

    PARAFLOW_SDK_CONCURRENCY     requests in flight (default 16; 1: one at a time, as before)
    PARAFLOW_SDK_BUDGET_BYTES    bytes held ahead of the reader or behind the writer (default 64 MiB)
    PARAFLOW_SDK_STREAM_ABOVE    items larger than this are streamed on open, not fetched ahead (8 MiB)
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class TransferSettings:
    concurrency: int = 16
    budget_bytes: int = 64 * 1024 * 1024
    stream_above: int = 8 * 1024 * 1024

    @classmethod
    def from_env(cls) -> TransferSettings:
        e, default = os.environ, cls()
        return cls(
            concurrency=max(1, int(e.get("PARAFLOW_SDK_CONCURRENCY") or default.concurrency)),
            budget_bytes=max(1, int(e.get("PARAFLOW_SDK_BUDGET_BYTES") or default.budget_bytes)),
            stream_above=max(0, int(e.get("PARAFLOW_SDK_STREAM_ABOVE") or default.stream_above)),
        )

    @property
    def concurrent(self) -> bool:
        return self.concurrency > 1


class Body(io.BytesIO):
    """A fetched item's bytes with the surface of the streamed response it stands in for."""

    @property
    def data(self) -> bytes:
        return self.getvalue()

    def stream(self, amt: int = 2**16) -> Iterator[bytes]:
        while chunk := self.read(amt):
            yield chunk

    def release_conn(self) -> None:
        """Nothing to give back: the connection went back to the pool when the bytes arrived."""


class Prefetcher:
    """Fetches keys in the order the processor will read them, ahead of it.

    ``take(key)`` hands over one key's bytes and lets the next ones start. Keys skipped by the
    reader are dropped as it passes them; a key read out of order, or larger than
    ``stream_above``, is not fetched ahead (``take`` returns None: read it directly)."""

    def __init__(
        self,
        fetch: Callable[[str], bytes],
        keys: Sequence[tuple[str, int]],
        *,
        settings: TransferSettings,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.fetch, self.keys, self.settings, self.pool = fetch, list(keys), settings, pool
        self.position = {key: i for i, (key, _) in reversed(list(enumerate(self.keys)))}
        self.cursor = 0  # the reader is at or past every key before this
        self.scheduled = 0  # keys before this have been considered for fetching
        self.started: dict[int, Future[bytes]] = {}
        self.reserved = 0  # sizes of the keys fetched or in flight, not yet taken
        self.peak_reserved = 0

    def take(self, key: str) -> bytes | None:
        at = self.position.get(key)
        if at is None or at < self.cursor:
            return None
        for skipped in [i for i in self.started if i < at]:
            self._release(skipped).cancel()
        self.cursor = at + 1
        self._fill(at)
        future = self.started.get(at)
        if future is None:
            self._fill(self.cursor)
            return None
        self._release(at)
        self._fill(self.cursor)
        return future.result()

    def _release(self, index: int) -> Future[bytes]:
        self.reserved -= self.keys[index][1]
        return self.started.pop(index)

    def _fill(self, start: int) -> None:
        """Starts fetches from ``start`` on while there is room in flight and in the budget."""
        self.scheduled = max(self.scheduled, start)
        s = self.settings
        while self.scheduled < len(self.keys) and len(self.started) < s.concurrency:
            key, size = self.keys[self.scheduled]
            if size > s.stream_above:
                self.scheduled += 1
                continue
            if self.reserved and self.reserved + size > s.budget_bytes:
                return
            self.started[self.scheduled] = self.pool.submit(self.fetch, key)
            self.reserved += size
            self.peak_reserved = max(self.peak_reserved, self.reserved)
            self.scheduled += 1


class Uploader:
    """Uploads behind the writer: at most ``concurrency`` in flight and ``budget_bytes`` held.

    ``submit`` returns at once unless the budget is full, then waits for the oldest upload. The
    first failure is raised by the next ``submit`` or by ``finish``, which waits for them all."""

    def __init__(self, *, settings: TransferSettings, pool: ThreadPoolExecutor) -> None:
        self.settings, self.pool = settings, pool
        self.pending: deque[tuple[Future[Any], int]] = deque()
        self.held = 0
        self.peak_held = 0

    def submit(self, upload: Callable[[], T], size: int) -> Future[T]:
        self._raise_failed()
        while self.pending and (
            self.held + size > self.settings.budget_bytes or len(self.pending) >= self.settings.concurrency
        ):
            self._wait_oldest()
        future = self.pool.submit(upload)
        self.pending.append((future, size))
        self.held += size
        self.peak_held = max(self.peak_held, self.held)
        return future

    def finish(self) -> None:
        while self.pending:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, size = self.pending.popleft()
        self.held -= size
        future.result()  # its failure fails the shard, as a failed upload always did

    def _raise_failed(self) -> None:
        for future, _ in self.pending:
            if future.done() and future.exception() is not None:
                future.result()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, pool: ThreadPoolExecutor, window: int) -> Iterator[R]:
    """``map(fn, items)`` with up to ``window`` calls running ahead, results in order."""
    running: deque[Future[R]] = deque()
    for item in items:
        running.append(pool.submit(fn, item))
        if len(running) >= window:
            yield running.popleft().result()
    while running:
        yield running.popleft().result()
