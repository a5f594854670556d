"""Items out of the input, streamed: objects under a prefix, records of JSONL, JSON-array or CSV
objects (gzip-compressed or not), or items given inline in the workflow.

Memory holds one record at a time whatever the input's size. Each record travels as the JSON
text of its value: a JSONL line is checked and kept as it is, never parsed into objects and
written again. A UTF-8 byte-order mark opening an object (after gzip) is not part of its first
record, whatever the format; one anywhere else is data like any other. Input that cannot be read
raises ``InputProblem`` naming the object and the line (or item) at fault; it is final, so the
partitioner records it instead of failing to be retried.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import itertools
import json
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, cast

import ijson  # type: ignore[import-untyped]
import pydantic_core
from minio import Minio
from minio.error import S3Error

from paraflow_worker.contract import InputReason, Item, ReaderConfig

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"


class InputProblem(Exception):
    def __init__(self, reason: InputReason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True, slots=True)
class RawRecord:
    index: int  # in the whole input
    text: str  # the value as JSON
    size: int  # bytes it takes in a partition document
    where: str  # for messages: the object and line, or the inline item


def list_items(client: Minio, bucket: str, prefix: str, *, key_glob: str = "") -> Iterator[Item]:
    """Objects under ``prefix`` in S3 listing order (lexicographic, so deterministic).

    A key ending in ``/`` is an object like any other (S3 and MinIO store, list and serve it,
    with or without content), so it is an item too; only a listing's common prefixes, which
    have no ETag, are not objects."""
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        if obj.object_name is None or (obj.is_dir and obj.etag is None):
            continue
        if key_glob and not fnmatch.fnmatchcase(obj.object_name[len(prefix) :], key_glob):
            continue
        yield Item(key=obj.object_name, size=obj.size or 0, etag=(obj.etag or "").strip('"'))


def records(
    client: Minio,
    bucket: str,
    prefix: str,
    *,
    config: ReaderConfig,
    key_glob: str = "",
    max_record_bytes: int = 1 << 30,
) -> Iterator[RawRecord]:
    """Every record of the input in order, numbered across objects, at most ``max_items``.
    Empty objects and folder markers (keys ending in ``/``) hold no records and are passed over."""
    if config.items is not None:
        found: Iterator[tuple[str, str]] = (
            (json.dumps(value, ensure_ascii=False), f"spec.input.items[{i}]") for i, value in enumerate(config.items)
        )
    else:
        if config.key:
            keys: Iterable[str] = [config.key]
        else:
            listed = list_items(client, bucket, prefix, key_glob=key_glob)
            keys = (item.key for item in listed if item.size > 0 and not item.key.endswith("/"))
        found = itertools.chain.from_iterable(
            _records_of(client, bucket, key, config=config, max_record_bytes=max_record_bytes) for key in keys
        )
    if config.max_items:
        found = itertools.islice(found, config.max_items)
    for index, (text, where) in enumerate(found):
        # What the record costs in its partition document: its JSON and the wrapper around it.
        size = (len(text) if text.isascii() else len(text.encode())) + len(f'{{"index":{index},"value":}},')
        yield RawRecord(index, text, size, where)


def _records_of(
    client: Minio, bucket: str, key: str, *, config: ReaderConfig, max_record_bytes: int
) -> Iterator[tuple[str, str]]:
    where = f"s3://{bucket}/{key}"
    with _open(client, bucket, key, compression=config.compression) as stream:
        if config.format == "jsonl":
            yield from _jsonl(stream, where, max_record_bytes)
        elif config.format == "json":
            yield from _json_array(stream, where)
        else:
            yield from _csv(stream, where, config, max_record_bytes=max_record_bytes)


@contextmanager
def _open(client: Minio, bucket: str, key: str, *, compression: str) -> Iterator[IO[bytes]]:
    try:
        response = client.get_object(bucket, key)
    except S3Error as e:  # a mistyped reader.key, a bucket it may not read: no retry will help
        raise InputProblem(InputReason.INPUT_NOT_READABLE, f"s3://{bucket}/{key}: {e.code}: {e.message}") from e
    # urllib3 closes a response read to its end, and a reader that then asks for more (gzip
    # checking its trailer, ijson its last buffer) must get b"", not "read of closed file".
    # (HTTPResponse has the switch; the BaseHTTPResponse minio declares does not.)
    response.auto_close = False  # type: ignore[attr-defined]
    try:
        stream = io.BufferedReader(response, 1 << 20)
        if compression == "gzip" or (compression == "auto" and key.endswith(".gz")):
            if stream.peek(2)[:2] != GZIP_MAGIC:
                raise InputProblem(
                    InputReason.NOT_GZIP,
                    f"s3://{bucket}/{key} is not gzip-compressed (reader.compression: {compression})",
                )
            yield _past_bom(gzip.GzipFile(fileobj=stream))
        else:
            yield _past_bom(stream)
    except (OSError, EOFError, zlib.error) as e:  # a truncated or corrupt gzip stream, a dropped connection
        raise InputProblem(InputReason.INVALID_RECORD, f"s3://{bucket}/{key}: cannot read it to its end: {e}") from e
    finally:
        response.close()
        response.release_conn()


def _past_bom(stream: io.BufferedReader[Any] | gzip.GzipFile) -> IO[bytes]:
    """The stream after a byte-order mark at its start (Windows tools and many SaaS exports write
    one), dropped here, before any reader, so that JSONL, JSON and CSV agree on it and a JSONL
    line keeps its number and its whole maxBytesPerPartition."""
    ahead = stream.peek(len(BOM))[: len(BOM)]
    if ahead == BOM:
        stream.read(len(BOM))
    elif ahead and len(ahead) < len(BOM) and BOM.startswith(ahead):
        # A peek makes at most one read, so it can stop short of 3 bytes where a gzip member
        # ends: read them for sure, and hand back the ones that turn out not to be a mark.
        head = b""
        while len(head) < len(BOM) and (more := stream.read(len(BOM) - len(head))):
            head += more
        if head != BOM:
            return cast(IO[bytes], io.BufferedReader(_Replayed(head, stream), 1 << 16))
    return cast(IO[bytes], stream)


class _Replayed(io.RawIOBase):
    """``head``, bytes already taken from ``rest``, then the rest."""

    def __init__(self, head: bytes, rest: io.BufferedIOBase) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        if self.head:
            data, self.head = self.head[: len(view)], self.head[len(view) :]
        else:
            data = self.rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _jsonl(stream: IO[bytes], where: str, max_record_bytes: int) -> Iterator[tuple[str, str]]:
    """Lines checked by the parser the SDK reads them with (strict JSON: no NaN, no lone
    surrogates), never read past one record's limit (a 100 MB line is refused, not held)."""
    number = 0
    while raw := stream.readline(max_record_bytes + 2):
        number += 1
        if len(raw) > max_record_bytes + 1:
            raise InputProblem(
                InputReason.RECORD_TOO_LARGE,
                f"{where} line {number}: a record over maxBytesPerPartition ({max_record_bytes})",
            )
        line = raw.strip()
        if not line:
            continue
        try:
            pydantic_core.from_json(line, allow_inf_nan=False)
            text = line.decode()
        except ValueError as e:  # UnicodeDecodeError is one too
            raise InputProblem(InputReason.INVALID_RECORD, f"{where} line {number}: not JSON: {e}") from e
        yield text, f"{where} line {number}"


def _json_array(stream: IO[bytes], where: str) -> Iterator[tuple[str, str]]:
    """Elements of a top-level array. Numbers go through floats (ijson's C parser): an integer
    beyond 64 bits or a decimal needing more than a double's precision is JSONL's job."""
    events = ijson.parse(stream, use_float=True)
    number = 0
    try:
        first = next(events)
        if first[1] != "start_array":
            kind = {"start_map": "an object", "string": "a string", "null": "null"}.get(first[1], f"a {first[1]}")
            raise InputProblem(InputReason.NOT_AN_ARRAY, f"{where} is not a JSON array of records: it holds {kind}")
        for number, value in enumerate(ijson.items(itertools.chain([first], events), "item")):
            yield json.dumps(value, ensure_ascii=False, allow_nan=False), f"{where} item {number}"
    except (ijson.JSONError, ValueError) as e:  # ValueError: a number JSON cannot carry (1e400)
        first_line = (str(e).splitlines() or [type(e).__name__])[0]
        raise InputProblem(
            InputReason.INVALID_RECORD, f"{where} near item {number}: not valid JSON: {first_line}"
        ) from e


def _csv(stream: IO[bytes], where: str, config: ReaderConfig, *, max_record_bytes: int) -> Iterator[tuple[str, str]]:
    # Not utf-8-sig: _open dropped the mark Excel's "CSV UTF-8" starts with; a second one is data.
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    csv.field_size_limit(max(max_record_bytes, 1))
    rows = csv.reader(text, delimiter=config.csv_delimiter)
    try:
        header = list(config.csv_columns) if config.csv_header == "given" else next(rows, [])
        repeated = sorted({name for name in header if header.count(name) > 1})
        if "" in header or repeated:
            problem = f"{', '.join(repeated)} repeated" if repeated else "an empty name"
            raise InputProblem(
                InputReason.INVALID_RECORD, f"{where}: the header must name each column once ({problem})"
            )
        for row in rows:
            if not row:
                continue
            if len(row) != len(header):
                raise InputProblem(
                    InputReason.INVALID_RECORD,
                    f"{where} line {rows.line_num}: {len(row)} fields where the header has {len(header)}",
                )
            yield json.dumps(dict(zip(header, row, strict=True)), ensure_ascii=False), f"{where} line {rows.line_num}"
    except csv.Error as e:
        reason = (
            InputReason.RECORD_TOO_LARGE if "field larger than field limit" in str(e) else InputReason.INVALID_RECORD
        )
        raise InputProblem(reason, f"{where} line {rows.line_num + 1}: {e}") from e
    except UnicodeDecodeError as e:
        raise InputProblem(
            InputReason.INVALID_RECORD, f"{where} line {rows.line_num + 1}: not UTF-8 ({e.reason})"
        ) from e
