"""The built-in partitioner's batching: every key in exactly one partition, limits respected."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow_worker.contract import Item, shard_slice
from paraflow_worker.partition import batch

pytestmark = pytest.mark.unit

sizes = st.lists(st.integers(min_value=0, max_value=5000), max_size=300)


def items_of(sizes: list[int]) -> list[Item]:
    return [Item(key=f"k{i:05d}", size=s) for i, s in enumerate(sizes)]


@given(sizes, st.integers(1, 50), st.integers(1, 20000))
def test_every_item_lands_in_exactly_one_partition_in_order(sizes: list[int], max_items: int, max_bytes: int) -> None:
    items = items_of(sizes)
    parts = list(batch(items, max_items, max_bytes))
    assert [i for p in parts for i in p] == items
    assert all(p for p in parts)


@given(sizes, st.integers(1, 50), st.integers(1, 20000))
def test_partitions_respect_both_limits_unless_one_item_alone_is_bigger(
    sizes: list[int], max_items: int, max_bytes: int
) -> None:
    for part in batch(items_of(sizes), max_items, max_bytes):
        assert len(part) <= max_items
        assert sum(i.size for i in part) <= max_bytes or len(part) == 1


@given(sizes, st.integers(1, 50), st.integers(1, 20000))
def test_batching_is_greedy_a_partition_closes_only_when_the_next_item_would_not_fit(
    sizes: list[int], max_items: int, max_bytes: int
) -> None:
    parts = list(batch(items_of(sizes), max_items, max_bytes))
    for current, following in itertools.pairwise(parts):
        first_next = following[0]
        assert len(current) == max_items or sum(i.size for i in current) + first_next.size > max_bytes


@given(st.integers(0, 200), st.integers(1, 16))
def test_shards_split_a_partition_without_overlap_or_loss(count: int, shards: int) -> None:
    items = items_of([1] * count)
    slices = [shard_slice(items, k, shards) for k in range(shards)]
    assert sorted(i.key for s in slices for i in s) == [i.key for i in items]
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(batch([], 0, 10))
