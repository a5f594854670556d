"""``python -m paraflow_worker.demo.echo``: emits, for each record, the record itself and the
batch's batchInput. The shape of every per-record Map iteration (check a stock level, call an
API), with the work left out: what goes in is what comes out, so a run can be checked record by
record against its input.
"""

from __future__ import annotations

from paraflow_worker import sdk


def main() -> None:
    with sdk.shard() as shard:
        records = shard.records()
        for record in records:
            shard.emit({"value": record.value, "batch": shard.batch_input}, record)
        print(f"partition {shard.partition} shard {shard.shard}/{shard.shard_count}: {len(records)} records")


if __name__ == "__main__":
    main()
