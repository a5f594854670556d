import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow.planning import indexsets

pytestmark = pytest.mark.unit


def test_compress_merges_runs_like_completed_indexes() -> None:
    assert indexsets.compress([0, 1, 2, 3, 7, 9, 10, 11, 12]) == "0-3,7,9-12"
    assert indexsets.compress([]) == ""


@given(st.sets(st.integers(min_value=0, max_value=5000)))
def test_expand_inverts_compress(indexes: set[int]) -> None:
    assert indexsets.expand(indexsets.compress(indexes)) == indexes


def test_expand_rejects_backwards_ranges() -> None:
    import pytest

    with pytest.raises(ValueError, match="bad index range"):
        indexsets.expand("5-3")
