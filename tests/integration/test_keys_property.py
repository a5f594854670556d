"""Any key S3 accepts goes through partition -> process -> manifest -> replication byte-exact, on
the real MinIO servers and cluster.

Hypothesis draws sets of keys from the whole space S3 accepts: any Unicode (outside surrogates
and NUL), control characters, ``+ % ? & #``, spaces and other blanks, backslashes, keys up to
1,024 bytes with segments up to MinIO's 255 bytes, and trailing ``/``. Each set runs as one
workflow whose processor (``paraflow_worker.demo.copy``) writes one output per input, named like
it and holding its bytes, replicated server-side to a bucket on the same server and streamed to
the second server. Excluded on purpose, as MinIO refuses or mangles them (see contract.key_problem
and the docs): '.'/'..' segments, empty segments, keys where one is a "directory" of another.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from kubernetes import client
from minio import Minio

from paraflow_worker import contract
from tests.conftest import temporary_bucket
from tests.operator_process import OperatorProcess
from tests.workflows import WORKER_IMAGE, create, wait_phase, workflow

pytestmark = pytest.mark.cluster

# Long enough that a drawn key of the maximum length makes a 1,024-byte input key, while its
# output (<output>/<uid>/p<i>/a<n>/<name>) and replica keys still fit.
INPUT_PREFIX = "in/" + "x" * 57 + "/"
NAME_MAX_BYTES = contract.MAX_KEY_BYTES - len(INPUT_PREFIX)
OUTPUT_PREFIX = "o/"
EXAMPLES = int(os.environ.get("PARAFLOW_KEY_EXAMPLES", "8"))

SPECIAL = list("+%?&#=;:,@$!*'()[]{}<>|^`~\"\\ \t\r\n\x01\x1f\x7f\u00a0\u3000")
CHAR = st.one_of(
    st.sampled_from(SPECIAL),
    st.characters(codec="utf-8", exclude_characters="\x00/"),  # any code point but NUL, '/' joins
)


def clip(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes in UTF-8."""
    return text.encode()[:limit].decode(errors="ignore")


def segment_ok(segment: str) -> bool:
    return bool(segment) and all(part.strip() not in (".", "..") for part in segment.split("\\"))


SEGMENT = st.one_of(
    st.text(CHAR, min_size=1, max_size=12),
    st.text(CHAR, min_size=100, max_size=300).map(lambda s: clip(s, contract.MAX_SEGMENT_BYTES)),
).filter(segment_ok)


@st.composite
def names(draw: st.DrawFn) -> str:
    segments = draw(st.lists(SEGMENT, min_size=1, max_size=6))
    name = clip("/".join(segments), NAME_MAX_BYTES - 1)
    if not name or name.endswith("/"):
        name = name.rstrip("/") or "k"
    if draw(st.booleans()) and draw(st.booleans()):
        name += "/"  # an object whose key ends in '/', with or without content
    return name


def collision_free(keys: list[str]) -> bool:
    """No key is a "directory" of another: MinIO cannot list both of `a` and `a/b`."""
    stems = [k.rstrip("/") for k in keys]
    if len(set(stems)) != len(stems):
        return False
    return not any(a != b and b.startswith(a + "/") for a in stems for b in stems)


def valid(name: str) -> bool:
    key = INPUT_PREFIX + name
    return contract.key_problem(key) is None and "__XLDIR__" not in key and all(segment_ok(s) for s in name.split("/"))


KEY_SETS = st.lists(names().filter(valid), min_size=1, max_size=6, unique=True).filter(collision_free)
CONTENTS = st.binary(min_size=0, max_size=64)


def listing(s3: Minio, bucket: str, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for obj in s3.list_objects(bucket, prefix=prefix, recursive=True):
        key = obj.object_name or ""
        out[key] = s3.get_object(bucket, key).read()
    return out


def fresh(s3: Minio, stem: str) -> Iterator[str]:
    return temporary_bucket(s3, stem)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_any_key_s3_accepts_survives_partition_processing_manifest_and_replication_byte_exact(
    data: st.DataObject,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    s3_second: Minio,
    namespace: str,
    test_env: dict[str, str],
) -> None:
    keys = data.draw(KEY_SETS, label="keys")
    inputs = {name: data.draw(CONTENTS, label=f"content of {name!r}") for name in keys}
    buckets = [fresh(s3, "k"), fresh(s3, "k-copy"), fresh(s3_second, "k-far")]
    bucket, near, far = (next(b) for b in buckets)
    try:
        for name, content in inputs.items():
            s3.put_object(bucket, INPUT_PREFIX + name, io.BytesIO(content), len(content))
        wf_name = f"keys-{uuid.uuid4().hex[:8]}"
        body = workflow(wf_name, test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=4)
        body["spec"]["input"]["prefix"] = INPUT_PREFIX
        body["spec"]["output"]["prefix"] = OUTPUT_PREFIX
        body["spec"]["partitioner"]["builtin"]["maxItemsPerPartition"] = 2
        body["spec"]["processor"] = {"image": WORKER_IMAGE, "command": ["python", "-m", "paraflow_worker.demo.copy"]}
        far_storage = {"endpoint": test_env["PARAFLOW_TEST_S3_ENDPOINT_2"], "credentialsSecret": "minio-creds"}
        body["spec"]["replication"] = {
            "destinations": [
                {"name": "near", "bucket": near, "prefix": "c/"},
                {"name": "far", "bucket": far, "storage": far_storage},
            ]
        }
        created = create(custom, namespace, body)
        done = wait_phase(custom, namespace, wf_name, {"Succeeded", "Failed"}, 180)
        assert done["status"]["phase"] == "Succeeded", done["status"]

        run = contract.run_prefix(OUTPUT_PREFIX, created["metadata"]["uid"])
        manifest = json.loads(s3.get_object(bucket, contract.manifest_key(run)).read())
        recorded: dict[str, tuple[int, contract.OutputObject]] = {}
        for winner in manifest["succeeded"]:
            for record in listing(s3, bucket, winner["resultsPrefix"]).values():
                shard = contract.ShardResult.model_validate_json(record)
                for out in shard.outputs:
                    recorded[out.key[len(shard.output_prefix) :]] = (shard.partition, out)
        note(f"recorded names: {sorted(recorded)!r}")
        assert sorted(recorded) == sorted(inputs)  # every name, byte-exact, once
        for name, (_, out) in recorded.items():
            assert out.sha256 == hashlib.sha256(inputs[name]).hexdigest()
            assert s3.get_object(bucket, out.key).read() == inputs[name]
        expected = {f"p{partition}/{name}": inputs[name] for name, (partition, _) in recorded.items()}
        assert listing(s3, near) == {f"c/{k}": v for k, v in expected.items()}
        assert listing(s3_second, far) == expected
    finally:
        for b in buckets:
            next(b, None)
