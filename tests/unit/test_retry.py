import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow.models import RetrySpec
from paraflow.planning.retry import backoff_seconds, delay_seconds, doubling_backoff

pytestmark = pytest.mark.unit


def test_backoff_grows_by_rate_and_is_capped() -> None:
    retry = RetrySpec(interval_seconds=10, backoff_rate=2.0, max_delay_seconds=35, jitter="none")
    assert [backoff_seconds(retry, n) for n in (1, 2, 3, 4)] == [10, 20, 35, 35]


@given(attempt=st.integers(1, 10), seed=st.text(max_size=20))
def test_full_jitter_stays_within_the_backoff_and_is_repeatable(attempt: int, seed: str) -> None:
    retry = RetrySpec(interval_seconds=7, backoff_rate=1.5, max_delay_seconds=300, jitter="full")
    delay = delay_seconds(retry, attempt, seed)
    assert 0 <= delay <= backoff_seconds(retry, attempt)
    assert delay == delay_seconds(retry, attempt, seed)  # a restarted operator computes the same due time


def test_the_operators_own_backoff_doubles_to_its_cap_and_survives_an_outage_of_hours() -> None:
    assert [doubling_backoff(1, n, 30) for n in (1, 2, 3, 5, 6)] == [1, 2, 4, 16, 30]
    assert doubling_backoff(1, 100_000, 30) == 30, "2 ** 100,000 as a float would overflow"
