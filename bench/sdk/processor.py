"""The processor each row runs: read every item of the shard, write it back as an output.

python -m bench.sdk.processor sdk             # paraflow's SDK (PARAFLOW_SDK_CONCURRENCY decides the path)
python -m bench.sdk.processor threads N       # a hand-written thread pool of N over minio-py
"""

from __future__ import annotations

import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from paraflow_worker import contract, sdk
from paraflow_worker.contract import Env, PartitionItems
from paraflow_worker.storage import client_from_env, get_json


def with_sdk() -> None:
    with sdk.shard() as shard:
        for item in shard.objects():
            with shard.open(item) as stream:
                data = stream.read()
            shard.write(f"copy/{item.key}", data)


def with_threads(n: int) -> None:
    """What a user would write by hand for the same job, with minio-py and a thread pool."""
    e = os.environ
    client = client_from_env(n)
    doc = get_json(
        client,
        e[Env.RUN_BUCKET],
        contract.partition_key(e[Env.RUN_PREFIX], int(e[Env.PARTITION])),
        model=PartitionItems,
    )

    def one(item: contract.Item) -> None:
        response = client.get_object(e[Env.INPUT_BUCKET], item.key)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        client.put_object(e[Env.OUTPUT_BUCKET], f"{e[Env.OUTPUT_PREFIX]}copy/{item.key}", io.BytesIO(data), len(data))

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, doc.items))


if __name__ == "__main__":
    if sys.argv[1] == "sdk":
        with_sdk()
    else:
        with_threads(int(sys.argv[2]))
