"""The replication engine against two real MinIO servers: same-server and cross-server copies,
metadata and tags kept, idempotent re-runs, verification, deletes, refused writes, big objects,
bytes corrupted in transit. Cross-server copies run on each of its request paths: minio-py's,
obstore's fast path (which hands the keys it cannot carry to minio-py's), and batches that MinIO
extracts (which hand what they cannot carry, or what did not land, to the one-by-one paths)."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import uuid

import pytest
from minio import Minio
from obstore.store import S3Store

from paraflow_worker import batchcopy, contract, fastcopy, sdk
from paraflow_worker.contract import PartitionRef, ReplicationTarget, ReplicationTask, TargetReport
from paraflow_worker.replicate import FastStores, Replicator
from paraflow_worker.storage import make_client
from tests.support import Relay

pytestmark = pytest.mark.storage

OUT = "out/"
RUN = "run/"
UID = "3f1c2b9e-0000-4000-8000-000000000001"
WORKFLOW = "ns/wf"


def write_outputs(s3: Minio, bucket: str, partition: int, attempt: int, files: dict[str, bytes]) -> None:
    shard = sdk.Shard(
        client=s3,
        workflow="wf",
        partition=partition,
        attempt=attempt,
        shard=0,
        shard_count=1,
        input_bucket=bucket,
        run_bucket=bucket,
        run_prefix=RUN,
        output_bucket=bucket,
        output_prefix=contract.attempt_output_prefix(OUT, UID, partition, attempt=attempt),
    )
    for name, data in files.items():
        shard.write(name, data, content_type="text/csv", metadata={"origin": "test"}, tags={"team": "logs"})
    shard.commit()


def task(targets: list[ReplicationTarget], **kw: object) -> ReplicationTask:
    fields: dict[str, object] = {
        "label": "t",
        "workflow": WORKFLOW,
        "run_uid": UID,
        "output_prefix": OUT,
        "targets": targets,
        "partitions": [PartitionRef(index=0, attempt=2), PartitionRef(index=1, attempt=1)],
    }
    return ReplicationTask.model_validate({**fields, **kw})


def store_like(client: Minio, bucket: str) -> S3Store:
    """An obstore store reaching ``bucket`` as ``client`` does: same server, same credentials."""
    url = client._base_url  # minio-py keeps no public accessor for where and as whom it connects
    creds = client._provider.retrieve()  # type: ignore[union-attr]
    endpoint = f"{'https' if url.is_https else 'http'}://{url.host}"
    return fastcopy.store(endpoint, bucket, creds.access_key, secret_key=creds.secret_key, region=None)


def replicator(s3: Minio, bucket: str, t: ReplicationTask, clients: list[Minio], fast: str) -> Replicator:
    stores = None
    if fast != "minio-py":
        streamed = {
            x.name: store_like(c, x.bucket) for x, c in zip(t.targets, clients, strict=True) if not x.server_side
        }
        stores = FastStores(store_like(s3, bucket), streamed)
    r = Replicator(s3, bucket, RUN, task=t, target_clients=clients, sleep=lambda _: None, fast=stores)
    # These tests copy a few objects: batches only when asked for, then even for one.
    r.batch_min = 1 if fast == "batched" else 1 << 30
    return r


def replicate(s3: Minio, bucket: str, t: ReplicationTask, clients: list[Minio], fast: str) -> dict[str, dict]:
    r = replicator(s3, bucket, t, clients, fast)
    report = r.run(r.work())
    return {x.name: x.model_dump() for x in report.targets}


@pytest.fixture(params=["minio-py", "obstore", "batched"])
def fast(request: pytest.FixtureRequest) -> str:
    """Which request path cross-server copies take."""
    return str(request.param)


@pytest.fixture
def outputs(s3: Minio, bucket: str) -> dict[str, bytes]:
    files0 = {"a.csv": b"alpha\n" * 100, "b.csv": b"beta\n"}
    write_outputs(s3, bucket, 0, 2, files0)
    write_outputs(s3, bucket, 1, 1, {"c.csv": b"gamma\n" * 7})
    # A superseded attempt's output exists too, and must never be replicated.
    write_outputs(s3, bucket, 0, 1, {"zombie.csv": b"stale"})
    return {"p0/a.csv": files0["a.csv"], "p0/b.csv": files0["b.csv"], "p1/c.csv": b"gamma\n" * 7}


def test_copies_same_and_cross_server_keeping_type_metadata_and_tags_and_skips_on_rerun(
    s3: Minio,
    s3_second: Minio,
    bucket: str,
    bucket_second: str,
    outputs: dict[str, bytes],
    storage_env: dict[str, str],
    fast: str,
) -> None:
    same_bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(same_bucket)
    targets = [
        ReplicationTarget(name="archive", bucket=same_bucket, prefix="copy/", endpoint="x", server_side=True),
        ReplicationTarget(name="dev", bucket=bucket_second, prefix="", endpoint="y"),
    ]
    first = replicate(s3, bucket, task(targets), [s3, s3_second], fast)
    assert (first["archive"]["copied"], first["archive"]["bytes"]) == (3, sum(map(len, outputs.values())))
    assert first["dev"]["copied"] == 3
    for client, b, prefix in ((s3, same_bucket, "copy/"), (s3_second, bucket_second, "")):
        keys = sorted(o.object_name for o in client.list_objects(b, recursive=True))
        assert keys == sorted(prefix + k for k in outputs)
        for k, data in outputs.items():
            assert client.get_object(b, prefix + k).read() == data
            stat = client.stat_object(b, prefix + k)
            assert stat.content_type == "text/csv"
            assert stat.metadata["x-amz-meta-origin"] == "test"
            assert stat.metadata["x-amz-meta-paraflow-sha256"] == hashlib.sha256(data).hexdigest()
            assert dict(client.get_object_tags(b, prefix + k)) == {"team": "logs"}

    again = replicate(s3, bucket, task(targets), [s3, s3_second], fast)
    assert (again["archive"]["copied"], again["archive"]["skipped"]) == (0, 3)
    assert (again["dev"]["copied"], again["dev"]["skipped"]) == (0, 3)


def test_a_rerun_restores_a_replica_rewritten_with_or_without_its_mark_from_the_listing_alone(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, outputs: dict[str, bytes], fast: str
) -> None:
    """What a redrive of a succeeded run does: a replica whose bytes changed is copied again, even
    when its size and paraflow-sha256 mark stayed (its ETag, an MD5, no longer matches)."""
    targets = [ReplicationTarget(name="dev", bucket=bucket_second, endpoint="y")]
    replicate(s3, bucket, task(targets), [s3_second], fast)
    good = outputs["p0/b.csv"]
    bad = b"BETA\n"  # same size
    mark = {"paraflow-sha256": hashlib.sha256(good).hexdigest()}
    for kept in (mark, {}):
        s3_second.put_object(bucket_second, "p0/b.csv", io.BytesIO(bad), len(bad), metadata=kept)
        rerun = replicate(s3, bucket, task(targets, verify="checksum"), [s3_second], fast)
        assert (rerun["dev"]["copied"], rerun["dev"]["skipped"]) == (1, 2), f"mark kept: {bool(kept)}"
        assert s3_second.get_object(bucket_second, "p0/b.csv").read() == good


def test_full_read_verification_reads_each_replica_back_and_repairs_a_corrupted_one(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, outputs: dict[str, bytes], fast: str
) -> None:
    targets = [ReplicationTarget(name="dev", bucket=bucket_second, endpoint="y")]
    replicate(s3, bucket, task(targets), [s3_second], fast)
    good = outputs["p0/b.csv"]
    bad = b"BETA\n"
    s3_second.put_object(
        bucket_second,
        "p0/b.csv",
        io.BytesIO(bad),
        len(bad),
        metadata={"paraflow-sha256": hashlib.sha256(good).hexdigest()},
    )
    reading = replicate(s3, bucket, task(targets, verify="fullRead"), [s3_second], fast)
    assert (reading["dev"]["copied"], reading["dev"]["skipped"]) == (1, 2)
    assert s3_second.get_object(bucket_second, "p0/b.csv").read() == good


def test_delete_sync_removes_only_this_workflows_replicas_whose_output_left_the_run_and_lists_each(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, outputs: dict[str, bytes], fast: str
) -> None:
    targets = [ReplicationTarget(name="dev", bucket=bucket_second, endpoint="y")]
    replicate(s3, bucket, task(targets), [s3_second], fast)  # p0/a.csv, p0/b.csv, p1/c.csv, marked as ours
    foreign = {"p9/old.csv": {}, "p0/z.csv": {"paraflow-workflow": "ns/other", "paraflow-destination": "dev"}}
    for key, meta in foreign.items():  # a user's object, and another workflow's replica
        s3_second.put_object(bucket_second, key, io.BytesIO(b"old"), 3, metadata=meta)
    only_p1 = task(targets, partitions=[PartitionRef(index=1, attempt=1)])
    kept = replicate(s3, bucket, only_p1, [s3_second], fast)
    assert kept["dev"]["deleted"] == 0  # no deleteSync: nothing goes

    synced = replicate(s3, bucket, only_p1.model_copy(update={"delete_sync": True}), [s3_second], fast)

    assert (synced["dev"]["deleted"], synced["dev"]["deleted_keys"]) == (2, ["p0/a.csv", "p0/b.csv"])
    left = sorted(o.object_name for o in s3_second.list_objects(bucket_second, recursive=True))
    assert left == ["p0/z.csv", "p1/c.csv", "p9/old.csv"]


def test_a_destination_that_is_the_output_under_another_endpoint_name_is_refused_untouched(
    s3: Minio, bucket: str, outputs: dict[str, bytes], fast: str
) -> None:
    """The same server reached as another name (an alias, localhost for 127.0.0.1): endpoint
    strings differ, the storage is one. Copying into the output prefix is refused, deleting too."""
    before = sorted(o.object_name for o in s3.list_objects(bucket, recursive=True))
    alias = [ReplicationTarget(name="alias", bucket=bucket, prefix="", endpoint="http://localhost:1")]

    report = replicate(s3, bucket, task(alias, delete_sync=True), [s3], fast)["alias"]

    assert (report["copied"], report["deleted"], report["failed"]) == (0, 0, 1)
    assert "is the storage holding the output prefix" in report["failures"][0]["reason"]
    after = sorted(o.object_name for o in s3.list_objects(bucket, recursive=True))
    assert after == sorted([*before, contract.identity_key(RUN)])


@pytest.mark.parametrize("server_side", [True, False], ids=["server-side", "streamed"])
def test_keys_of_any_utf8_and_control_characters_replicate_byte_exact(
    s3: Minio, bucket: str, server_side: bool, fast: str
) -> None:
    names = ["ä.csv", "日本/語.txt", "emoji 🎉.bin", "tab\there", "plus+percent%25 q?a&b#c", "a  b/ c"]
    write_outputs(s3, bucket, 0, 2, {n: n.encode() * 3 for n in names})
    target_bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(target_bucket)
    targets = [ReplicationTarget(name="copy", bucket=target_bucket, endpoint="x", server_side=server_side)]

    report = replicate(s3, bucket, task(targets, partitions=[PartitionRef(index=0, attempt=2)]), [s3], fast)["copy"]

    assert (report["copied"], report["failed"]) == (len(names), 0), report["failures"]
    listed = sorted(o.object_name for o in s3.list_objects(target_bucket, recursive=True))
    assert listed == sorted(f"p0/{n}" for n in names)
    for n in names:
        assert s3.get_object(target_bucket, f"p0/{n}").read() == n.encode() * 3
        s3.remove_object(target_bucket, f"p0/{n}")
    s3.remove_bucket(target_bucket)


def test_a_target_refusing_writes_records_each_failure_and_a_rerun_after_repair_loses_nothing(
    s3: Minio, s3_second: Minio, bucket: str, outputs: dict[str, bytes], storage_env: dict[str, str], fast: str
) -> None:

    revoked = make_client(
        storage_env["PARAFLOW_TEST_S3_ENDPOINT_2"], storage_env["PARAFLOW_TEST_S3_ACCESS_KEY"], "wrong"
    )
    missing = f"t2-{uuid.uuid4().hex[:12]}"
    targets = [ReplicationTarget(name="dev", bucket=missing, endpoint="y")]
    revoked_report = replicate(s3, bucket, task(targets), [revoked], fast)["dev"]
    assert (revoked_report["copied"], revoked_report["failed"]) == (0, 3)  # each failure recorded, with why
    assert all(
        "InvalidAccessKeyId" in f["reason"] or "SignatureDoesNotMatch" in f["reason"]
        for f in revoked_report["failures"]
    )
    s3_second.make_bucket(missing)
    refusing = replicator(s3, bucket, task(targets), [s3_second], fast)
    # Writes refused mid-run: the target bucket disappears after the listing.
    work = refusing.work()
    refusing._existing = lambda client, target: (s3_second.remove_bucket(missing), {})[1]  # type: ignore[method-assign]
    report = refusing.run(work).targets[0]
    assert report.failed == 3
    assert all("NoSuchBucket" in f.reason for f in report.failures)
    s3_second.make_bucket(missing)
    repaired = replicate(s3, bucket, task(targets), [s3_second], fast)
    assert repaired["dev"]["copied"] == 3
    assert sorted(o.object_name for o in s3_second.list_objects(missing, recursive=True)) == sorted(outputs)
    for k in outputs:
        s3_second.remove_object(missing, k)
    s3_second.remove_bucket(missing)


def test_big_objects_stream_across_servers_and_part_copy_on_one_server_keeping_metadata(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, monkeypatch: pytest.MonkeyPatch, fast: str
) -> None:
    data = os.urandom(21 * 1024 * 1024)
    write_outputs(s3, bucket, 0, 2, {"big.bin": data})
    same = f"t-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(same)
    targets = [
        ReplicationTarget(name="same", bucket=same, endpoint="x", server_side=True),
        ReplicationTarget(name="far", bucket=bucket_second, endpoint="y"),
    ]
    composed: list[int] = []
    real_compose = s3.compose_object

    def spy(bucket_name: str, object_name: str, sources: list, **kw: object) -> object:
        composed.append(len(sources))
        return real_compose(bucket_name, object_name, sources, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(s3, "compose_object", spy)
    r = replicator(s3, bucket, task(targets, verify="fullRead"), [s3, s3_second], fast)
    r.max_copy_part = 8 * 1024 * 1024  # exercise the >5 GiB path's part-copy on a 21 MiB object
    report = {t.name: t for t in r.run(r.work()).targets}
    assert report["same"].copied == report["far"].copied == 1
    for client, b in ((s3, same), (s3_second, bucket_second)):
        stat = client.stat_object(b, "p0/big.bin")
        assert stat.size == len(data)
        assert stat.content_type == "text/csv"
        assert stat.metadata["x-amz-meta-origin"] == "test"
        assert dict(client.get_object_tags(b, "p0/big.bin")) == {"team": "logs"}
    assert composed == [3]  # one multipart part-copy of three ranges


@pytest.mark.parametrize("size", [4096, 3 * 1024 * 1024], ids=["whole", "multipart"])
def test_a_byte_corrupted_in_transit_is_caught_and_never_becomes_a_replica(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, storage_env: dict[str, str], size: int, fast: str
) -> None:
    marker = b"\x00paraflow-flip-me\x00"
    data = os.urandom(size // 2) + marker + os.urandom(size - size // 2 - len(marker))
    write_outputs(s3, bucket, 0, 2, {"x.bin": data})
    host, port = s3._base_url.host.rsplit(":", 1)  # the relay sits between the copy and its source
    relay = Relay(host, int(port), flip=marker)
    creds = (storage_env["PARAFLOW_TEST_S3_ACCESS_KEY"], storage_env["PARAFLOW_TEST_S3_SECRET_KEY"])
    through = make_client(relay.endpoint, *creds)
    targets = [ReplicationTarget(name="far", bucket=bucket_second, endpoint="y")]
    r = replicator(through, bucket, task(targets, partitions=[PartitionRef(index=0, attempt=2)]), [s3_second], fast)

    report = r.run(r.work()).targets[0]

    assert relay.flipped >= 1
    assert (report.copied, report.failed) == (0, 1)
    assert "sha256" in report.failures[0].reason, report.failures[0].reason
    assert list(s3_second.list_objects(bucket_second, recursive=True)) == []


def small_outputs(s3: Minio, bucket: str, count: int) -> dict[str, bytes]:
    # Hadoop-style checksum files sort first: a batch of keys ending in "." segments' neighbours.
    files = {f"{'.' if i % 2 else ''}part-{i:03d}.log": os.urandom(50 + i) for i in range(count)}
    write_outputs(s3, bucket, 0, 2, files)
    return {f"p0/{name}": data for name, data in files.items()}


def spy_on_single_copies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys copied one by one (outside any batch), in order."""
    keys: list[str] = []
    copy = Replicator._copy

    def spied(self: Replicator, client: Minio, target: ReplicationTarget, key: str, *, obj: object) -> None:
        keys.append(key)
        copy(self, client, target, key, obj=obj)  # type: ignore[arg-type]

    monkeypatch.setattr(Replicator, "_copy", spied)
    return keys


def replicate_in_batches_of_ten(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, monkeypatch: pytest.MonkeyPatch
) -> TargetReport:
    """Partition 0's outputs to ``bucket_second``, batched at 10 objects a request."""
    monkeypatch.setattr(batchcopy, "batches", functools.partial(batchcopy.batches, most=10))
    targets = [ReplicationTarget(name="far", bucket=bucket_second, endpoint="y")]
    r = replicator(s3, bucket, task(targets, partitions=[PartitionRef(index=0, attempt=2)]), [s3_second], "batched")
    return r.run(r.work()).targets[0]


def test_small_objects_cross_servers_in_extracted_tars_and_only_a_replica_not_as_sent_is_recopied(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = small_outputs(s3, bucket, 40)
    requests: list[int] = []
    sending = batchcopy.send
    victim = sorted(files)[17]  # in the second batch: the first has landed, the others run in parallel

    def send_then_misreport_one(
        source: S3Store, target: S3Store, prefix: str, *, batch: list[batchcopy.Item]
    ) -> batchcopy.Sent:
        sent = sending(source, target, prefix, batch=batch)
        requests.append(len(batch))
        if victim in sent.md5:  # as if the server had stored other bytes than it was sent
            return batchcopy.Sent({**sent.md5, victim: "0" * 32}, sent.error)
        return sent

    monkeypatch.setattr(batchcopy, "send", send_then_misreport_one)
    singly = spy_on_single_copies(monkeypatch)

    report = replicate_in_batches_of_ten(s3, s3_second, bucket, bucket_second, monkeypatch)

    assert requests == [10, 10, 10, 10]
    assert singly == [victim]
    assert (report.copied, report.failed, report.bytes) == (40, 0, sum(map(len, files.values())))
    listed = sorted(o.object_name for o in s3_second.list_objects(bucket_second, recursive=True))
    assert listed == sorted(files)  # nothing else: neither a TAR nor the probe
    for key, data in files.items():
        assert s3_second.get_object(bucket_second, key).read() == data
        stat = s3_second.stat_object(bucket_second, key)
        assert (stat.content_type, stat.metadata["x-amz-meta-origin"]) == ("text/csv", "test")
        assert stat.metadata["x-amz-meta-paraflow-sha256"] == hashlib.sha256(data).hexdigest()
        assert dict(s3_second.get_object_tags(bucket_second, key)) == {"team": "logs"}


def test_when_nothing_of_the_first_batch_lands_the_others_are_not_sent_and_all_is_copied_one_by_one(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = small_outputs(s3, bucket, 40)
    requests: list[int] = []

    def refused(source: S3Store, target: S3Store, prefix: str, *, batch: list[batchcopy.Item]) -> batchcopy.Sent:
        requests.append(len(batch))
        return batchcopy.Sent({item.key: "0" * 32 for item in batch}, "connection reset")

    monkeypatch.setattr(batchcopy, "send", refused)
    singly = spy_on_single_copies(monkeypatch)

    report = replicate_in_batches_of_ten(s3, s3_second, bucket, bucket_second, monkeypatch)

    assert requests == [10]
    assert sorted(singly) == sorted(files)
    assert (report.copied, report.failed) == (40, 0)
    assert {o.object_name for o in s3_second.list_objects(bucket_second, recursive=True)} == set(files)


def test_minio_answers_the_extraction_probe_without_keeping_anything(s3_second: Minio, bucket_second: str) -> None:
    assert batchcopy.extracts(store_like(s3_second, bucket_second), "some/prefix/")
    assert list(s3_second.list_objects(bucket_second, recursive=True)) == []


def test_a_good_replica_of_an_object_left_out_of_a_batch_is_never_removed(
    s3: Minio, s3_second: Minio, bucket: str, bucket_second: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = small_outputs(s3, bucket, 40)
    targets = [ReplicationTarget(name="far", bucket=bucket_second, endpoint="y")]
    t = task(targets, partitions=[PartitionRef(index=0, attempt=2)])
    replicate(s3, bucket, t, [s3_second], "batched")
    gone = sorted(files)[3]
    s3.remove_object(bucket, contract.attempt_output_prefix(OUT, UID, 0, attempt=2) + gone.removeprefix("p0/"))
    for key in files:
        if key != gone:
            s3_second.remove_object(bucket_second, key)
    # As if the destination's listing had failed: nothing counts as already there.
    monkeypatch.setattr(Replicator, "_existing", lambda self, client, target: {})

    report = replicate(s3, bucket, t, [s3_second], "batched")["far"]

    assert (report["copied"], report["failed"]) == (39, 1)
    assert report["failures"][0]["key"] == gone
    assert s3_second.get_object(bucket_second, gone).read() == files[gone]  # read out of a batch, kept
