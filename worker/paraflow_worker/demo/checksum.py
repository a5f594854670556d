"""``python -m paraflow_worker.demo.checksum``: for each input item, write one line with its key,
size and sha256 to ``checksums.txt`` under the attempt's output prefix.

Failure injection, to rehearse retries, tolerance and redrive: while an object named
``<run prefix>chaos/p<partition>`` (any content) exists in the run bucket, every attempt of that
partition exits with the code written in it (default 1). ``PARAFLOW_DEMO_FAIL_ATTEMPTS=N`` makes
only attempts up to N fail. ``PARAFLOW_DEMO_SLEEP_SECONDS`` slows each shard down.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

from minio.error import S3Error

from paraflow_worker import sdk


def _injected_failure(shard: sdk.Shard) -> int | None:
    key = f"{shard.run_prefix}chaos/p{shard.partition}"
    try:
        response = shard.client.get_object(shard.run_bucket, key)
    except S3Error as e:
        if e.code == "NoSuchKey":
            return None
        raise
    try:
        text = response.read().decode().strip()
    finally:
        response.close()
        response.release_conn()
    limit = int(os.environ.get("PARAFLOW_DEMO_FAIL_ATTEMPTS", "0") or 0)
    if limit and shard.attempt > limit:
        return None
    return int(text or "1")


def main() -> None:
    with sdk.shard() as shard:
        time.sleep(float(os.environ.get("PARAFLOW_DEMO_SLEEP_SECONDS", "0") or 0))
        code = _injected_failure(shard)
        if code is not None:
            print(f"partition {shard.partition} attempt {shard.attempt}: injected failure, exit {code}")
            sys.exit(code)
        lines = []
        for item in shard.items():
            digest = hashlib.sha256()
            with shard.open(item) as stream:
                for chunk in stream.stream(1 << 20):
                    digest.update(chunk)
            lines.append(f"{item.key}\t{item.size}\t{digest.hexdigest()}\n")
        shard.write(f"checksums-s{shard.shard}.txt", "".join(lines).encode(), content_type="text/plain")
        print(f"partition {shard.partition} shard {shard.shard}/{shard.shard_count}: {len(lines)} items")


if __name__ == "__main__":
    main()
