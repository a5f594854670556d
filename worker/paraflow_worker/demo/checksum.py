"""``python -m paraflow_worker.demo.checksum``: for each input item, write one line with its key,
size and sha256 to ``checksums.txt`` under the attempt's output prefix.

Failure injection, to rehearse retries, tolerance and redrive: while an object named
``<run prefix>chaos/p<partition>`` exists in the run bucket, attempts of that partition exit
early. Its content is ``CODE`` (every attempt exits with CODE) or ``CODE:N`` (only attempts up
to N do). ``PARAFLOW_DEMO_SLEEP_SECONDS`` slows each shard down.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

from minio.error import S3Error

from paraflow_worker import sdk
from paraflow_worker.contract import Env


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
    code, _, upto = text.partition(":")
    if upto and shard.attempt > int(upto):
        return None
    return int(code or "1")


def main() -> None:
    with sdk.shard() as shard:
        time.sleep(float(os.environ.get(Env.DEMO_SLEEP, "0") or 0))
        code = _injected_failure(shard)
        if code is not None:
            print(f"partition {shard.partition} attempt {shard.attempt}: injected failure, exit {code}")
            sys.exit(code)
        lines = []
        for item in shard.objects():
            digest = hashlib.sha256()
            with shard.open(item) as stream:
                for chunk in stream.stream(1 << 20):
                    digest.update(chunk)
            lines.append(f"{item.key}\t{item.size}\t{digest.hexdigest()}\n")
        shard.write(f"checksums-s{shard.shard}.txt", "".join(lines).encode(), content_type="text/plain")
        print(f"partition {shard.partition} shard {shard.shard}/{shard.shard_count}: {len(lines)} items")


if __name__ == "__main__":
    main()
