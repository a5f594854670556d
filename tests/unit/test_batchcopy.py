"""Batched small-object copies, their pure parts: which objects may go in a batch, how batches are
cut, the listing that checks one, and the TAR MinIO extracts (names and PAX records)."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paraflow_worker import batchcopy
from paraflow_worker.batchcopy import Item
from paraflow_worker.contract import OutputObject

pytestmark = pytest.mark.unit

SHA = "ab" * 32
MARKS = {"paraflow-sha256": SHA, "paraflow-workflow": "ns/wf"}
segment = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
keys = st.lists(segment, min_size=1, max_size=3).map("/".join)


def item(key: str, size: int = 10, metadata: dict[str, str] | None = None, **tags: str) -> Item:
    obj = OutputObject(key="src/" + key, size=size, sha256=SHA, content_type="text/csv")
    return Item(obj, key, MARKS if metadata is None else metadata, tags)


@given(keys)
def test_a_key_minio_would_extract_under_another_name_or_refuse_is_never_batched(key: str) -> None:
    cleaned_elsewhere = any(part.strip() in (".", "..") for part in key.replace("\\", "/").split("/"))
    awkward = any(ch < " " or ch == "\x7f" for ch in key) or "//" in key or key.startswith("/") or key.endswith("/")
    assert batchcopy.batchable(item(key)) is not (cleaned_elsewhere or awkward)


def test_big_objects_and_metadata_a_put_would_send_differently_go_one_by_one() -> None:
    assert batchcopy.batchable(item("a", size=batchcopy.OBJECT_MAX))
    assert not batchcopy.batchable(item("a", size=batchcopy.OBJECT_MAX + 1))
    assert not batchcopy.batchable(item("é" * 513))  # 1,026 bytes: a key S3 refuses
    assert not batchcopy.batchable(item("a", metadata={"origin": "café"}))
    assert not batchcopy.batchable(item("a", metadata={"Content-Disposition": "attachment"}))
    assert not batchcopy.batchable(item("a", metadata={"a=b": "c"}))  # MinIO splits a record at "="
    assert not batchcopy.batchable(item("a", metadata={"Origin": "x", "origin": "y"}))  # one header
    assert not batchcopy.batchable(item("a", metadata={"big": "x" * batchcopy.METADATA_MAX}))  # a PUT's limit


sizes = st.integers(min_value=0, max_value=batchcopy.OBJECT_MAX)


@given(st.dictionaries(keys, sizes, max_size=60), st.integers(1, 7), st.integers(1, 3 * batchcopy.OBJECT_MAX))
def test_batches_are_contiguous_key_ranges_within_both_bounds_and_lose_nothing(
    sized: dict[str, int], most: int, most_bytes: int
) -> None:
    cut = batchcopy.batches((item(k, s) for k, s in sized.items()), most, most_bytes)
    assert [i.key for batch in cut for i in batch] == sorted(sized)
    for batch in cut:
        assert len(batch) <= most
        assert len(batch) == 1 or sum(i.obj.size for i in batch) <= most_bytes


@given(st.lists(keys, min_size=1, max_size=20, unique=True))
def test_the_listing_of_a_batch_reaches_each_of_its_keys_asks_what_minio_answers_and_stops_after_the_last(
    batch_keys: list[str],
) -> None:
    batch = [item(k) for k in sorted(batch_keys)]
    prefix, start_after, last = batchcopy.listing_range(batch)
    for k in batch_keys:
        assert k.startswith(prefix) and start_after < k <= last
    # MinIO refuses a listing whose prefix or start-after holds a "." or ".." segment.
    assert prefix == "" or prefix.endswith("/")
    assert not any(part.strip() in (".", "..") for part in start_after.replace("\\", "/").split("/"))


class Refusing:
    """obstore as a server that stores the probe, then refuses to show or delete it."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def put(self, store: object, key: str, data: bytes, **options: object) -> None:
        pass

    def head(self, store: object, key: str) -> None:
        raise PermissionError("AccessDenied")

    def delete(self, store: object, key: str) -> None:
        self.deleted.append(key)
        raise PermissionError("AccessDenied")


def test_a_probe_that_cannot_be_looked_at_or_deleted_answers_no_without_raising(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake = Refusing()
    monkeypatch.setattr(batchcopy.obstore, "put", fake.put)
    monkeypatch.setattr(batchcopy.obstore, "head", fake.head)
    monkeypatch.setattr(batchcopy.obstore, "delete", fake.delete)

    assert batchcopy.extracts(object(), "dst/") is False  # type: ignore[arg-type]
    assert len(fake.deleted) == 1 and fake.deleted[0].startswith("dst/.paraflow-extract-probe-")


def test_the_tar_names_each_object_by_its_whole_key_and_carries_its_headers_as_minio_reads_them() -> None:
    entries = [
        (item("dst/日本/語.csv", size=3, metadata={**MARKS, "origin": " padded "}, team="logs & ops"), b"abc"),
        (item("dst/" + "x" * 150, size=0), b""),
    ]

    with tarfile.open(fileobj=io.BytesIO(batchcopy.tar_of(entries)), mode="r") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["dst/日本/語.csv", "dst/" + "x" * 150]
        assert tar.extractfile(members[0]).read() == b"abc"  # type: ignore[union-attr]
        assert members[0].mtime == 0  # the server stamps the replica itself
        records = members[0].pax_headers
    assert records["minio.metadata.Content-Type"] == "text/csv"
    assert records["minio.metadata.X-Amz-Meta-paraflow-sha256"] == SHA
    assert records["minio.metadata.X-Amz-Meta-origin"] == "padded"  # as a header's value arrives
    assert records["minio.metadata.X-Amz-Tagging"] == "team=logs%20%26%20ops"
    assert "minio.metadata.X-Amz-Tagging" not in members[1].pax_headers
