"""The fast copy path's pure decisions: which copies obstore makes exactly as minio-py would,
and how its errors read in a report."""

from __future__ import annotations

import obstore.exceptions
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow_worker import fastcopy

pytestmark = pytest.mark.unit

segment = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
MARKS = {"paraflow-sha256": "ab" * 32, "paraflow-workflow": "ns/wf"}


@given(st.lists(segment, min_size=1, max_size=4).map("/".join))
def test_a_key_with_a_control_character_or_an_empty_or_trailing_segment_takes_minio_pys_path(key: str) -> None:
    awkward = any(ch < " " or ch == "\x7f" for ch in key) or "//" in key or key.startswith("/") or key.endswith("/")
    assert fastcopy.carries("src/" + key, "dst/" + key, MARKS) is not awkward


def test_metadata_obstore_would_send_differently_takes_minio_pys_path() -> None:
    assert fastcopy.carries("a", "b", {**MARKS, "origin": "test"})
    assert not fastcopy.carries("a", "b", {"origin": "café"})  # not a plain ASCII header value
    assert not fastcopy.carries("a", "b", {"Content-Disposition": "attachment"})  # a header of its own
    assert not fastcopy.carries("a", "b", {"x-amz-meta-origin": "test"})


def test_an_obstore_error_reads_as_the_s3_code_status_and_first_sentence() -> None:
    text = (
        "The operation lacked the necessary privileges to complete for path p1/x.txt: Error performing PUT "
        "http://127.0.0.1:19000/b/p1/x.txt in 340µs - Server returned non-2xx status code: 403 Forbidden: "  # noqa: RUF001 (obstore writes the micro sign)
        '<?xml version="1.0"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>\n\n'
        "Debug source:\nPermissionDenied { ... }"
    )
    assert fastcopy.explain(obstore.exceptions.PermissionDeniedError(text)) == (
        "AccessDenied (403 Forbidden): The operation lacked the necessary privileges to complete for path p1/x.txt"
    )
    assert fastcopy.explain(obstore.exceptions.GenericError("connection reset")) == "GenericError: connection reset"
