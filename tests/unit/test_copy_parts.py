"""Part arithmetic of the >5 GiB server-side copy (a multipart part-copy)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow_worker.replicate import MAX_COPY_PART, MAX_PARTS, MIN_COPY_PART, GiB, MiB, copy_parts

pytestmark = pytest.mark.unit


def test_just_over_5_gib_takes_two_near_equal_parts() -> None:
    parts = copy_parts(5 * GiB + 1)
    assert len(parts) == 2
    assert parts[0] == (0, parts[0][1])
    assert abs(parts[0][1] - parts[1][1]) <= 1


def test_a_5_tib_object_fits_in_the_part_limit() -> None:
    parts = copy_parts(5 * 1024 * GiB)
    assert len(parts) == 1024
    assert all(length <= MAX_COPY_PART for _, length in parts)


@given(st.integers(min_value=MAX_COPY_PART + 1, max_value=MAX_PARTS * MAX_COPY_PART))
def test_parts_cover_the_object_exactly_within_s3_limits(size: int) -> None:
    parts = copy_parts(size)
    assert parts[0][0] == 0
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert sum(length for _, length in parts) == size
    assert len(parts) == -(-size // MAX_COPY_PART)  # as few as allowed
    assert all(MIN_COPY_PART <= length <= MAX_COPY_PART for _, length in parts[:-1])
    assert len(parts) <= MAX_PARTS


def test_too_large_for_10000_parts_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 10000 parts"):
        copy_parts(10_001 * 8 * MiB, max_part=8 * MiB)
