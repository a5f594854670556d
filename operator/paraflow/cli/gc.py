"""`paraflow gc`: the run records and outputs that runs of deleted workflows left under an output
location. A run is found by its record folder ``<prefix>_paraflow/<uid>/``; it is an orphan when
no ParallelWorkflow in the cluster has that uid. Only what paraflow writes is ever named: a
uid-shaped folder holding at least one object of the run layout (``contract``), and the same
uid's output folder ``<prefix><uid>/``. A live run's data, other folders and other objects are
never touched."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paraflow_worker import contract

if TYPE_CHECKING:
    from minio import Minio

UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Keys a run writes under its record folder (contract's layout).
RUN_LAYOUT = re.compile(
    r"^(plan\.json|manifest\.json|identity\.json|partitions/\d+\.json|results/(p\d+/a\d+/s\d+|reduce/a\d+)\.json"
    r"|logs/[^/]+/[^/]+\.log)$"
)


@dataclass(frozen=True)
class Orphan:
    uid: str
    run_prefix: str
    output_prefix: str


def orphans(prefix: str, record_keys: Iterable[str], live: set[str]) -> list[Orphan]:
    """The runs under ``<prefix>_paraflow/`` (``record_keys``: every key listed there) whose uid no
    workflow has, recognised by an object of the run layout."""
    base = contract.runs_prefix(prefix)
    ours: set[str] = set()
    for key in record_keys:
        uid, _, rest = key.removeprefix(base).partition("/")
        if UID.match(uid) and uid not in live and RUN_LAYOUT.match(rest):
            ours.add(uid)
    return [
        Orphan(uid, contract.run_prefix(prefix, uid), contract.run_output_prefix(prefix, uid)) for uid in sorted(ours)
    ]


def listed(client: Minio, bucket: str, prefix: str) -> tuple[int, int]:
    """(objects, bytes) under ``prefix``."""
    count = size = 0
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        count, size = count + 1, size + (obj.size or 0)
    return count, size


def record_keys(client: Minio, bucket: str, prefix: str) -> Iterable[str]:
    base = contract.runs_prefix(prefix)
    return (o.object_name or "" for o in client.list_objects(bucket, prefix=base, recursive=True))
