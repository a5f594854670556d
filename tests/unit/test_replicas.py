"""Whether a replica already holds an output, from the listing alone where it can tell, and from
one question where the listing's ETag cannot."""

from __future__ import annotations

import pytest

from paraflow_worker.contract import OutputObject
from paraflow_worker.replicate import Replica, already_there

pytestmark = pytest.mark.unit


class _Stat:
    def __init__(self, headers: dict[str, str]) -> None:
        self.metadata = headers


class _Destination:
    """A destination answering one HEAD, with these response headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers, self.asked = headers, 0

    def stat_object(self, bucket: str, key: str) -> _Stat:
        self.asked += 1
        return _Stat(self.headers)


@pytest.mark.parametrize(
    ("listed_etag", "headers", "there"),
    [
        ("9e107d9d372bb6826bd81d3542a419d6", {}, True),  # the same MD5: no question asked
        ("00000000000000000000000000000000", {}, False),  # another MD5: other bytes under the mark
        ("00000000000000000000000000000000", {"X-Amz-Server-Side-Encryption": "aws:kms"}, True),
        ("d41d8cd98f00b204e9800998ecf8427e-2", {}, True),  # multipart: the ETag says nothing
    ],
    ids=["same-md5", "rewritten", "encrypted", "multipart"],
)
def test_a_replica_marked_alike_is_there_unless_its_md5_etag_differs_on_an_unencrypted_destination(
    listed_etag: str, headers: dict[str, str], there: bool
) -> None:
    obj = OutputObject(key="p0/a", size=3, sha256="a" * 64, etag="9e107d9d372bb6826bd81d3542a419d6")
    destination = _Destination(headers)
    replica = Replica(3, "a" * 64, etag=listed_etag)
    assert already_there(destination, "dest", "p0/a", there=replica, obj=obj) is there  # type: ignore[arg-type]
    assert destination.asked == (0 if listed_etag == obj.etag or "-" in listed_etag else 1)
    assert not already_there(destination, "dest", "p0/a", there=Replica(4, "a" * 64, etag=obj.etag), obj=obj)  # type: ignore[arg-type]
