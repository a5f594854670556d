"""The test suite's own arithmetic, on which the write-cap test in tests/local relies."""

import pytest

from tests.support import most_in_any_window

pytestmark = pytest.mark.unit


def test_the_window_counter_finds_the_densest_interval() -> None:
    assert most_in_any_window([], 1) == 0
    assert most_in_any_window([0, 0.5, 0.9, 5, 5.1], 1) == 3
    assert most_in_any_window([0, 2, 4, 6], 1) == 1
