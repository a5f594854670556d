"""Records out of JSONL, JSON-array and CSV objects (plain or gzip) and inline items, against a
fake of the MinIO client's two reading calls: every record comes back in order with its index in
the whole input, partitions respect both limits, and each kind of bad input is refused with a
message naming the object and the line or item at fault."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minio.error import S3Error

from paraflow_worker.contract import PartitionItems, ReaderConfig
from paraflow_worker.partition import batch, partitions_of
from paraflow_worker.readers import InputProblem, records

pytestmark = pytest.mark.unit

BOM = b"\xef\xbb\xbf"


class Body(io.BytesIO):
    """Like urllib3's response: closes itself once read to its end, unless told not to."""

    auto_close = True
    delivered = 0

    def release_conn(self) -> None:
        pass

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read of closed file")
        n = super().readinto(buffer)
        self.delivered += n
        if n == 0 and self.auto_close:
            self.close()
        return n

    def readable(self) -> bool:
        return True


class Listed:
    def __init__(self, key: str, size: int) -> None:
        self.object_name, self.size, self.etag, self.is_dir = key, size, "e", False


class FakeMinio:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, bucket: str, key: str) -> Body:
        if key not in self.objects:
            raise S3Error(None, "NoSuchKey", "The specified key does not exist.", key, "r", "h")  # type: ignore[arg-type]
        return Body(self.objects[key])

    def list_objects(self, bucket: str, prefix: str, recursive: bool) -> list[Listed]:
        return [Listed(k, len(v)) for k, v in sorted(self.objects.items()) if k.startswith(prefix)]


def read(objects: dict[str, bytes], **config: Any) -> list[tuple[int, Any]]:
    found = records(FakeMinio(objects), "in", "", config=ReaderConfig(**config))  # type: ignore[arg-type]
    return [(r.index, json.loads(r.text)) for r in found]


def read_kept(objects: dict[str, bytes], **config: Any) -> list[tuple[int, str, str]]:
    """Records as the partitioner gets them: the JSON text as kept, and where each was found."""
    found = records(FakeMinio(objects), "in", "", config=ReaderConfig(**config))  # type: ignore[arg-type]
    return [(r.index, r.text, r.where) for r in found]


def problem(objects: dict[str, bytes], **config: Any) -> InputProblem:
    with pytest.raises(InputProblem) as caught:
        read(objects, **config)
    return caught.value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def jsonl(values: list[Any]) -> bytes:
    return b"".join(json.dumps(v).encode() + b"\n" for v in values)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(json_values, max_size=6), min_size=1, max_size=4), st.booleans())
def test_jsonl_and_json_records_come_back_in_order_numbered_across_objects(
    files: list[list[Any]], zipped: bool
) -> None:
    every = [v for values in files for v in values]
    suffix = ".gz" if zipped else ""
    pack = gzip.compress if zipped else (lambda b: b)
    as_lines = {f"f{i}.jsonl{suffix}": pack(jsonl(values)) for i, values in enumerate(files)}
    as_arrays = {f"f{i}.json{suffix}": pack(json.dumps(values).encode()) for i, values in enumerate(files)}
    assert read(as_lines, format="jsonl") == list(enumerate(every))
    assert read(as_arrays, format="json") == list(enumerate(every))


@dataclass(frozen=True)
class Encoding:
    """One way to write the same lines to an object, as the tools that export them do."""

    bom: bool
    endings: tuple[str, ...]  # taken in turn, line by line: one for LF or CRLF, several for mixed
    trailing_newline: bool
    gzip_cuts: tuple[int, ...] | None  # None: plain; else gzip, a new member at each cut

    def __call__(self, lines: list[str]) -> bytes:
        ended = [line + end for line, end in zip(lines, itertools.cycle(self.endings), strict=False)]
        if ended and not self.trailing_newline:
            ended[-1] = lines[-1]
        data = (BOM if self.bom else b"") + "".join(ended).encode()
        if self.gzip_cuts is None:
            return data
        # gzip reads concatenated members as one stream; cuts near the start split the mark itself.
        bounds = [0, *sorted(min(cut, len(data)) for cut in self.gzip_cuts), len(data)]
        return b"".join(gzip.compress(data[a:b]) for a, b in itertools.pairwise(bounds))

    def config(self, fmt: str) -> dict[str, Any]:
        # One key for every encoding, so that `where` can be compared whole.
        return {"format": fmt, "key": "o", "compression": "none" if self.gzip_cuts is None else "gzip"}


encodings = st.builds(
    Encoding,
    bom=st.booleans(),
    endings=st.sampled_from([("\n",), ("\r\n",)]) | st.lists(st.sampled_from(["\n", "\r\n"]), min_size=2).map(tuple),
    trailing_newline=st.booleans(),
    gzip_cuts=st.none() | st.lists(st.integers(0, 5), max_size=2).map(tuple),
)
blank_lines = st.lists(st.sampled_from(["", " ", "\t", " \t "]), max_size=2)


@st.composite
def jsonl_layouts(draw: st.DrawFn) -> tuple[list[str], list[tuple[int, str, int]]]:
    """Records among blank lines, and each record's index, text and line number (counting blanks).
    Non-ASCII text, U+FEFF included, is written raw half the time: a mark inside a record is data."""
    ascii_only = draw(st.booleans())
    lines: list[str] = []
    expected = []
    for index, value in enumerate(draw(st.lists(json_values, max_size=8))):
        lines += draw(blank_lines)
        text = json.dumps(value, ensure_ascii=ascii_only)
        lines.append(text)
        expected.append((index, text, len(lines)))
    return lines + draw(blank_lines), expected


@settings(max_examples=200, deadline=None)
@given(jsonl_layouts(), encodings)
def test_jsonl_gives_the_same_records_on_the_same_line_numbers_with_or_without_bom_crlf_gzip_or_final_newline(
    layout: tuple[list[str], list[tuple[int, str, int]]], encoding: Encoding
) -> None:
    lines, expected = layout
    got = read_kept({"o": encoding(lines)}, **encoding.config("jsonl"))
    assert got == [(index, text, f"s3://in/o line {number}") for index, text, number in expected]


@settings(max_examples=100, deadline=None)
@given(jsonl_layouts(), encodings, st.data())
def test_a_bad_jsonl_line_is_named_by_its_number_with_or_without_bom_crlf_or_gzip(
    layout: tuple[list[str], list[tuple[int, str, int]]], encoding: Encoding, data: st.DataObject
) -> None:
    lines, _ = layout
    at = data.draw(st.integers(0, len(lines)), label="bad line at")
    refused = problem({"o": encoding([*lines[:at], '{"a": ', *lines[at:]])}, **encoding.config("jsonl"))
    assert refused.reason == "InvalidRecord"
    assert refused.message.startswith(f"s3://in/o line {at + 1}: not JSON")


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values, max_size=6), st.sampled_from([None, 0, 2]), st.booleans(), encodings, st.data())
def test_a_json_array_gives_the_same_records_with_or_without_bom_crlf_gzip_or_surrounding_whitespace(
    values: list[Any], indent: int | None, ascii_only: bool, encoding: Encoding, data: st.DataObject
) -> None:
    # json.dumps escapes newlines inside strings, so every "\n" it writes is whitespace to re-end.
    lines = json.dumps(values, indent=indent, ensure_ascii=ascii_only).split("\n")
    spaced = [line for part in lines for line in (*data.draw(blank_lines), part)] + data.draw(blank_lines)
    got = read_kept({"o": encoding(spaced)}, **encoding.config("json"))
    assert got == [(i, json.dumps(v, ensure_ascii=False), f"s3://in/o item {i}") for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("first", "rest", "expected"),
    [
        (b"\xef", b"\xbb\xbfid,name\n1,a\n", {"id": "1", "name": "a"}),
        (b"\xef\xbb", b"\xbfid,name\n1,a\n", {"id": "1", "name": "a"}),
        (b"\xef\xbb", b"\xbeid,name\n1,a\n", {"\ufefeid": "1", "name": "a"}),  # U+FEFE: looks close, is data
    ],
)
def test_a_bom_split_across_gzip_members_is_dropped_and_bytes_that_only_start_like_one_are_kept(
    first: bytes, rest: bytes, expected: dict[str, str]
) -> None:
    objects = {"t.csv.gz": gzip.compress(first) + gzip.compress(rest)}
    assert read(objects, format="csv") == [(0, expected)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.text(max_size=12), min_size=3, max_size=3), max_size=8),
    st.sampled_from([",", ";", "\t"]),
)
def test_csv_rows_become_dicts_of_their_columns_quoted_as_python_reads_them(rows: list[list[str]], sep: str) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=sep)
    writer.writerow(["id", "name", "note"])
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    expected = [dict(zip(["id", "name", "note"], row, strict=True)) for row in rows]
    assert [value for _, value in read({"t.csv": data}, format="csv", csv_delimiter=sep)] == expected


def test_given_csv_headers_read_every_row_as_data() -> None:
    got = read({"t.csv": b"1,a\n2,b\n"}, format="csv", csv_header="given", csv_columns=["n", "s"])
    assert got == [(0, {"n": "1", "s": "a"}), (1, {"n": "2", "s": "b"})]


def test_inline_items_and_max_items() -> None:
    assert read({}, format="jsonl", items=[1, {"a": "é"}, [2]]) == [(0, 1), (1, {"a": "é"}), (2, [2])]
    assert read({"a.jsonl": jsonl(list(range(10)))}, format="jsonl", max_items=3) == [(0, 0), (1, 1), (2, 2)]


def test_record_partitions_keep_both_limits_and_their_documents_parse_back() -> None:
    values = [{"n": i, "pad": "x" * (i % 7) * 10} for i in range(50)]
    client = FakeMinio({"in/r.jsonl": jsonl(values)})
    parts = list(
        partitions_of(
            client,
            "in",
            "in/",
            key_glob="",
            max_items=4,
            max_bytes=300,
            reader=ReaderConfig(format="jsonl", batch_input={"k": 1}),
        )
    )  # type: ignore[arg-type]
    docs = [PartitionItems.model_validate_json(p.render(i)) for i, p in enumerate(parts)]
    assert [r.value for d in docs for r in d.records] == values
    assert [r.index for d in docs for r in d.records] == list(range(50))
    assert all(len(d.records) <= 4 and d.kind == "records" and d.batch_input == {"k": 1} for d in docs)
    assert all(p.size <= 300 for p in parts)
    overhead = len('{"version":1,"index":99,"kind":"records","records":[]}') + len(',"batchInput":{"k": 1}')
    assert all(len(p.render(99)) <= 300 + overhead for p in parts), "the limit bounds what is written"
    assert list(batch([], 1, 1)) == []


# A gzip stream whose deflate data is damaged past its header.
CORRUPT_GZIP = gzip.compress(b'{"a": 1}\n' * 100)[:12] + bytes(range(60))


@pytest.mark.parametrize(
    ("objects", "config", "reason", "says"),
    [
        ({"o.jsonl": b'{"a": 1}\n{"a": \n'}, {"format": "jsonl"}, "InvalidRecord", "s3://in/o.jsonl line 2: not JSON"),
        ({"o.json": b'{"a": [1, 2]}'}, {"format": "json"}, "NotAnArray", "s3://in/o.json is not a JSON array"),
        ({"o.json": b"[1, 2,"}, {"format": "json"}, "InvalidRecord", "s3://in/o.json near item 1: not valid JSON"),
        ({"o.csv": b"a,b\n1,2\n3\n"}, {"format": "csv"}, "InvalidRecord", "s3://in/o.csv line 3: 1 fields where"),
        ({"o.jsonl.gz": b'{"a": 1}\n'}, {"format": "jsonl"}, "NotGzip", "s3://in/o.jsonl.gz is not gzip-compressed"),
        ({"o.jsonl": b"\xff\xfe\n"}, {"format": "jsonl"}, "InvalidRecord", "s3://in/o.jsonl line 1: not JSON"),
        ({"o.jsonl": b'"\\ud800"\n'}, {"format": "jsonl"}, "InvalidRecord", "line 1: not JSON"),  # lone surrogate
        ({"o.jsonl": b'{"a": NaN}\n'}, {"format": "jsonl"}, "InvalidRecord", "line 1: not JSON"),
        ({"o.csv": b"a,a\n1,2\n"}, {"format": "csv"}, "InvalidRecord", "the header must name each column once"),
        ({"o.csv": b"a,\n1,2\n"}, {"format": "csv"}, "InvalidRecord", "(an empty name)"),
        # A mark opening the object is dropped, one more or one opening a later line is not JSON.
        ({"o.jsonl": BOM + b'1\r\n\r\n{"a": \r\n'}, {"format": "jsonl"}, "InvalidRecord", "o.jsonl line 3: not JSON"),
        ({"o.jsonl": BOM + BOM + b"1\n"}, {"format": "jsonl"}, "InvalidRecord", "s3://in/o.jsonl line 1: not JSON"),
        ({"o.jsonl": b"1\n" + BOM + b"2\n"}, {"format": "jsonl"}, "InvalidRecord", "s3://in/o.jsonl line 2: not JSON"),
        ({"o.json": BOM + BOM + b"[1]"}, {"format": "json"}, "InvalidRecord", "s3://in/o.json near item 0: not valid"),
        ({"o.json": b"[1, " + BOM + b"2]"}, {"format": "json"}, "InvalidRecord", "o.json near item 0: not valid"),
        # Damaged deflate data raises zlib's own error, not an OSError.
        ({"o.jsonl.gz": CORRUPT_GZIP}, {"format": "jsonl"}, "InvalidRecord", "o.jsonl.gz: cannot read it to its end"),
    ],
)
def test_bad_input_is_refused_naming_the_object_and_where_in_it(
    objects: dict[str, bytes], config: dict[str, Any], reason: str, says: str
) -> None:
    refused = problem(objects, **config)
    assert refused.reason == reason
    assert says in refused.message


def test_a_record_larger_than_a_whole_partition_is_refused_naming_it() -> None:
    client = FakeMinio({"in/r.jsonl": jsonl(["small", "x" * 500])})
    with pytest.raises(InputProblem) as caught:
        list(
            partitions_of(
                client, "in", "in/", key_glob="", max_items=10, max_bytes=100, reader=ReaderConfig(format="jsonl")
            )
        )  # type: ignore[arg-type]
    assert caught.value.reason == "RecordTooLarge"
    assert "s3://in/in/r.jsonl line 2: a record over maxBytesPerPartition (100)" in caught.value.message


def test_a_huge_line_is_refused_after_reading_no_more_than_one_record_allows() -> None:
    class Counting(FakeMinio):
        def get_object(self, bucket: str, key: str) -> Body:
            self.body = super().get_object(bucket, key)
            return self.body

    client = Counting({"in/r.jsonl": b'"' + b"x" * 10_000_000 + b'"\n'})
    with pytest.raises(InputProblem, match="line 1: a record over maxBytesPerPartition"):
        list(
            partitions_of(
                client, "in", "in/", key_glob="", max_items=10, max_bytes=1000, reader=ReaderConfig(format="jsonl")
            )
        )  # type: ignore[arg-type]
    assert client.body.delivered < 2 * 1024 * 1024, "stopped within a buffer of the limit, never held the line"


def test_a_csv_with_a_byte_order_mark_names_its_first_column_plainly() -> None:
    assert read({"t.csv": "\ufeffid,name\n1,a\n".encode()}, format="csv") == [(0, {"id": "1", "name": "a"})]


def test_folder_markers_and_empty_objects_hold_no_records_and_a_missing_key_is_named() -> None:
    objects = {"d/": b"", "empty.json": b"", "r.json": b"[1, 2]"}
    assert read(objects, format="json") == [(0, 1), (1, 2)]
    missing = problem({}, format="jsonl", key="typo.jsonl")
    assert missing.reason == "InputNotReadable" and "s3://in/typo.jsonl: NoSuchKey" in missing.message


def test_object_partitions_stay_readable_by_an_sdk_from_before_records() -> None:
    client = FakeMinio({"in/a": b"1", "in/b": b"22"})
    (part,) = partitions_of(client, "in", "in/", key_glob="", max_items=10, max_bytes=100, reader=ReaderConfig())  # type: ignore[arg-type]
    assert json.loads(part.render(0)) == {
        "version": 1,
        "index": 0,
        "items": [{"key": "in/a", "size": 1, "etag": "e"}, {"key": "in/b", "size": 2, "etag": "e"}],
    }
