"""The SDK's concurrent item I/O: reads fetched ahead in order within the byte budget, writes
uploaded behind within it, failures surfacing, results in order."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paraflow_worker.transfer import Body, Prefetcher, TransferSettings, Uploader, ordered_map

pytestmark = pytest.mark.unit


class Store:
    """Bytes by key, counting requests in flight at once."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.data = {k: bytes([i % 251]) * n for i, (k, n) in enumerate(sizes.items())}
        self.in_flight = self.most_in_flight = 0
        self.fetched: list[str] = []
        self._lock = threading.Lock()

    def fetch(self, key: str) -> bytes:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.fetched.append(key)
        time.sleep(0.001)
        with self._lock:
            self.in_flight -= 1
        return self.data[key]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 64), min_size=1, max_size=40),
    budget=st.integers(1, 200),
    concurrency=st.integers(2, 8),
    skip=st.sets(st.integers(0, 39)),
)
def test_read_ahead_hands_each_item_its_bytes_within_the_budget_and_the_concurrency(
    sizes: list[int], budget: int, concurrency: int, skip: set[int]
) -> None:
    keys = [(f"k{i}", n) for i, n in enumerate(sizes)]
    store = Store(dict(keys))
    config = TransferSettings(concurrency=concurrency, budget_bytes=budget, stream_above=48)
    with ThreadPoolExecutor(concurrency) as pool:
        ahead = Prefetcher(store.fetch, keys, settings=config, pool=pool)
        for i, (key, size) in enumerate(keys):
            if i in skip:
                continue  # the processor skips it: it is dropped, never handed over
            got = ahead.take(key)
            if size > config.stream_above:
                assert got is None, "a large item is streamed, not fetched ahead"
            else:
                assert got == store.data[key]
    largest_small = max([n for n in sizes if n <= config.stream_above], default=0)
    assert ahead.peak_reserved <= max(budget, largest_small), "held ahead: within the budget (or one item)"
    assert store.most_in_flight <= concurrency


def test_read_ahead_keeps_several_requests_in_flight_while_the_reader_waits() -> None:
    keys = [(f"k{i}", 10) for i in range(40)]
    store = Store(dict(keys))
    with ThreadPoolExecutor(8) as pool:
        ahead = Prefetcher(store.fetch, keys, settings=TransferSettings(concurrency=8, budget_bytes=10_000), pool=pool)
        for key, _ in keys:
            ahead.take(key)
    assert store.most_in_flight > 1


def test_an_item_read_out_of_order_is_read_directly() -> None:
    keys = [("a", 1), ("b", 1), ("c", 1)]
    with ThreadPoolExecutor(2) as pool:
        ahead = Prefetcher(Store(dict(keys)).fetch, keys, settings=TransferSettings(concurrency=2), pool=pool)
        assert ahead.take("c") == b"\x02"
        assert ahead.take("a") is None, "behind the reader: not fetched again ahead"


def test_a_fetched_body_reads_like_the_response_it_stands_in_for() -> None:
    body = Body(b"one\ntwo\n")
    assert list(body.stream(3)) == [b"one", b"\ntw", b"o\n"]
    assert Body(b"x").data == b"x" and Body(b"a\nb").readlines() == [b"a\n", b"b"]


def test_uploads_hold_at_most_the_budget_and_the_first_failure_fails_the_rest() -> None:
    started: list[int] = []
    release = threading.Event()

    def upload(n: int) -> int:
        started.append(n)
        release.wait(5)
        return n

    with ThreadPoolExecutor(8) as pool:
        behind = Uploader(settings=TransferSettings(concurrency=8, budget_bytes=30), pool=pool)
        futures = [behind.submit(lambda n=n: upload(n), 10) for n in range(3)]
        threading.Timer(0.05, release.set).start()
        futures.append(behind.submit(lambda: upload(3), 10))  # waits for the oldest: 30 bytes held
        behind.finish()
    assert behind.peak_held <= 30 and [f.result() for f in futures] == [0, 1, 2, 3]

    def broken() -> None:
        raise OSError("connection reset")

    with ThreadPoolExecutor(2) as pool:
        failing = Uploader(settings=TransferSettings(concurrency=2), pool=pool)
        failing.submit(broken, 1)
        with pytest.raises(OSError, match="connection reset"):
            failing.finish()


@given(st.lists(st.integers(), max_size=50), st.integers(1, 6))
def test_ordered_map_returns_every_result_in_order(values: list[int], window: int) -> None:
    with ThreadPoolExecutor(4) as pool:
        assert list(ordered_map(lambda v: v * 2, values, pool=pool, window=window)) == [v * 2 for v in values]
