"""Items out of the input, streamed: objects under a prefix, records of JSONL, JSON-array or CSV
objects (gzip-compressed or not), or items given inline in the workflow.

Memory holds one record at a time whatever the input's size. Each record travels as the JSON
text of its value: a JSONL line is checked and kept as it is, never parsed into objects and
written again. Input that cannot be read raises ``InputProblem`` naming the object and the line
(or item) at fault; it is final, so the partitioner records it instead of failing to be retried.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import itertools
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, cast

import ijson  # type: ignore[import-untyped]
from minio import Minio

from paraflow_worker.contract import Item, ReaderConfig

GZIP_MAGIC = b"\x1f\x8b"


class InputProblem(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True, slots=True)
class RawRecord:
    index: int  # in the whole input
    text: str  # the value as JSON
    size: int  # bytes of that JSON
    where: str  # for messages: the object and line, or the inline item


def list_items(client: Minio, bucket: str, prefix: str, key_glob: str = "") -> Iterator[Item]:
    """Objects under ``prefix`` in S3 listing order (lexicographic, so deterministic).

    A key ending in ``/`` is an object like any other (S3 and MinIO store, list and serve it,
    with or without content), so it is an item too; only a listing's common prefixes, which
    have no ETag, are not objects."""
    index = 0
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        if obj.object_name is None or (obj.is_dir and obj.etag is None):
            continue
        if key_glob and not fnmatch.fnmatchcase(obj.object_name[len(prefix) :], key_glob):
            continue
        yield Item(key=obj.object_name, size=obj.size or 0, etag=(obj.etag or "").strip('"'), index=index)
        index += 1


def records(client: Minio, bucket: str, prefix: str, config: ReaderConfig, key_glob: str = "") -> Iterator[RawRecord]:
    """Every record of the input in order, numbered across objects, at most ``max_items``."""
    if config.items is not None:
        found: Iterator[tuple[str, str]] = (
            (json.dumps(value, ensure_ascii=False), f"spec.input.items[{i}]") for i, value in enumerate(config.items)
        )
    else:
        keys = [config.key] if config.key else [item.key for item in list_items(client, bucket, prefix, key_glob)]
        found = itertools.chain.from_iterable(_records_of(client, bucket, key, config) for key in keys)
    if config.max_items:
        found = itertools.islice(found, config.max_items)
    for index, (text, where) in enumerate(found):
        yield RawRecord(index, text, len(text) if text.isascii() else len(text.encode()), where)


def _records_of(client: Minio, bucket: str, key: str, config: ReaderConfig) -> Iterator[tuple[str, str]]:
    where = f"s3://{bucket}/{key}"
    with _open(client, bucket, key, config.compression) as stream:
        if config.format == "jsonl":
            yield from _jsonl(stream, where)
        elif config.format == "json":
            yield from _json_array(stream, where)
        else:
            yield from _csv(stream, where, config)


@contextmanager
def _open(client: Minio, bucket: str, key: str, compression: str) -> Iterator[IO[bytes]]:
    response = client.get_object(bucket, key)
    # urllib3 closes a response read to its end, and a reader that then asks for more (gzip
    # checking its trailer, ijson its last buffer) must get b"", not "read of closed file".
    # (HTTPResponse has the switch; the BaseHTTPResponse minio declares does not.)
    response.auto_close = False  # type: ignore[attr-defined]
    try:
        stream = io.BufferedReader(response, 1 << 20)
        if compression == "gzip" or (compression == "auto" and key.endswith(".gz")):
            if stream.peek(2)[:2] != GZIP_MAGIC:
                raise InputProblem(
                    "NotGzip", f"s3://{bucket}/{key} is not gzip-compressed (reader.compression: {compression})"
                )
            yield cast(IO[bytes], gzip.GzipFile(fileobj=stream))
        else:
            yield stream
    except (OSError, EOFError) as e:  # a truncated or corrupt gzip stream
        raise InputProblem("NotGzip", f"s3://{bucket}/{key}: cannot decompress: {e}") from e
    finally:
        response.close()
        response.release_conn()


def _jsonl(stream: Iterable[bytes], where: str) -> Iterator[tuple[str, str]]:
    for number, raw in enumerate(stream, 1):
        line = raw.strip()
        if not line:
            continue
        try:
            text = line.decode()
            json.loads(text)
        except UnicodeDecodeError as e:
            raise InputProblem("InvalidRecord", f"{where} line {number}: not UTF-8 ({e.reason})") from e
        except json.JSONDecodeError as e:
            raise InputProblem("InvalidRecord", f"{where} line {number}: not JSON: {e.msg} (column {e.colno})") from e
        yield text, f"{where} line {number}"


def _json_array(stream: IO[bytes], where: str) -> Iterator[tuple[str, str]]:
    events = ijson.parse(stream, use_float=True)
    try:
        first = next(events, None)
        if first is None or first[1] != "start_array":
            kind = "nothing" if first is None else first[1].replace("start_", "an ").replace("map", "object")
            raise InputProblem("NotAnArray", f"{where} is not a JSON array of records: it holds {kind}")
        for number, value in enumerate(ijson.items(itertools.chain([first], events), "item")):
            yield json.dumps(value, ensure_ascii=False), f"{where} item {number}"
    except ijson.JSONError as e:
        raise InputProblem("InvalidRecord", f"{where}: not valid JSON: {e}") from e


def _csv(stream: IO[bytes], where: str, config: ReaderConfig) -> Iterator[tuple[str, str]]:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    rows = csv.reader(text, delimiter=config.csv_delimiter)
    try:
        header = list(config.csv_columns) if config.csv_header == "given" else next(rows, [])
        for row in rows:
            if not row:
                continue
            if len(row) != len(header):
                raise InputProblem(
                    "InvalidRecord",
                    f"{where} line {rows.line_num}: {len(row)} fields where the header has {len(header)}",
                )
            yield json.dumps(dict(zip(header, row, strict=True)), ensure_ascii=False), f"{where} line {rows.line_num}"
    except (csv.Error, UnicodeDecodeError) as e:
        raise InputProblem("InvalidRecord", f"{where} line {rows.line_num}: {e}") from e
