"""``python -m paraflow_worker.demo.copy``: each input object becomes one output of the same name
(relative to the input prefix) and the same bytes, streamed. The shape of every per-object
transform (resize an image, re-encode a file), with the transform left out: what goes in is
what comes out, so a run can be checked byte for byte, whatever characters its keys hold.
"""

from __future__ import annotations

from typing import IO, cast

from paraflow_worker import sdk


def main() -> None:
    with sdk.shard() as shard:
        items = shard.objects()
        for item in items:
            with shard.open(item) as stream:
                shard.write(shard.relative_name(item), cast(IO[bytes], stream))
        print(f"partition {shard.partition} shard {shard.shard}/{shard.shard_count}: copied {len(items)} objects")


if __name__ == "__main__":
    main()
