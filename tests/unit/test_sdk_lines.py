"""The SDK reads emitted results as JSONL: lines end at b"\\n" only, whatever the chunks they
arrive in, and blank lines are no results."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow_worker.sdk import _lines

pytestmark = pytest.mark.unit


class Chunked:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self, amount: int) -> Iterator[bytes]:
        return iter(self.chunks)


# Any bytes but the line end, U+2028 and U+0085 (C2 85) among them.
line = st.binary(max_size=24).map(lambda b: b.replace(b"\n", b"\xc2\x85"))


@given(st.lists(line, max_size=10), st.integers(1, 9), st.booleans())
def test_lines_come_back_whole_however_the_stream_is_cut(lines: list[bytes], cut: int, final: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if final else b"")
    chunks = [data[i : i + cut] for i in range(0, len(data), cut)]
    assert list(_lines(Chunked(chunks))) == [x for x in lines if x]  # type: ignore[arg-type]
