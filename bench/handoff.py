"""The batch consumer's hand-off of a fetch to the worker's ingest (issue 19): aiokafka's
`ConsumerRecord`s handed on as fetched (`BatchConsumer._process` now) against a `RawRecord`
rebuilt from each (before), CPU per record, in one process.

    .venv/bin/python -m bench.handoff [--records 100000] [--rounds 3]

Records of the cached xhs stream (`bench.data`, 200,000 records, seed 1) over 4 partitions,
unpacked once into aiokafka `ConsumerRecord`s as its fetcher builds them, in fetches of 10,000;
each round runs rebuilt, handed, handed, rebuilt (ABBA, so a drift in the machine's load hits
both alike), each on a fresh `LiveState` through `BatchIngest`, timed with
`time.process_time`: the hand-off itself and what the ingest's reads of the records cost.
The collector runs with the worker's young threshold (`gcpace.young_threshold` for fetches of
10,000; `--young 700` for CPython's default) and the unpacked records frozen, as a worker's
fetched records are young and freed after each fetch rather than walked by a full pass; the
worker's paced collections between fetches are not run here.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from aiokafka.structs import ConsumerRecord

from bench.ingest_ab import FETCH, PARTITIONS, abba, medians_line, no_publish, xhs_records
from streams.runtime.batch_consumer import RawRecord
from streams.runtime.deadletters import DeadLetterPipeline
from streams.runtime.gcpace import young_threshold
from streams.runtime.ingest import BatchIngest
from streams.runtime.state import LiveState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--young", type=int, default=young_threshold(FETCH))
    args = parser.parse_args(argv)
    by_partition: list[list[Any]] = [[] for _ in range(PARTITIONS)]
    for partition, offset, line in xhs_records(args.records):
        by_partition[partition].append(
            ConsumerRecord(
                "t", partition, offset, 1_000 + offset, 0, b"k", line, None, 1, len(line), ()
            )
        )
    total = sum(len(records) for records in by_partition)
    # One fetch: up to FETCH records, a run of each partition's (aiokafka's `getmany` dict).
    fetches: list[list[list[Any]]] = []
    quarter = FETCH // PARTITIONS
    for start in range(0, max(len(records) for records in by_partition), quarter):
        fetches.append([records[start : start + quarter] for records in by_partition])
    new_record = tuple.__new__
    gc.collect()
    gc.freeze()
    gc.set_threshold(args.young, 10, 10)
    print(f"bench.handoff: {total:,} records, young threshold {args.young:,}", flush=True)

    async def handed() -> None:
        ingest = BatchIngest(LiveState(), DeadLetterPipeline(no_publish))
        for fetch in fetches:
            batch: list[Any] = []
            for records in fetch:
                batch += records
            await ingest(batch, time.time())

    async def rebuilt() -> None:
        ingest = BatchIngest(LiveState(), DeadLetterPipeline(no_publish))
        for fetch in fetches:
            batch: list[RawRecord] = []
            for records in fetch:
                for r in records:
                    batch.append(
                        new_record(
                            RawRecord,
                            (
                                r.topic,
                                r.partition,
                                r.offset,
                                r.key,
                                r.value,
                                r.timestamp,
                                r.headers,
                            ),
                        )
                    )
            await ingest(batch, time.time())

    us = abba("bench.handoff", ("rebuilt", rebuilt), ("handed", handed), total, args.rounds)
    line, medians = medians_line("bench.handoff", us)
    print(f"{line}, {medians['rebuilt'] - medians['handed']:.2f} us less a record")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
