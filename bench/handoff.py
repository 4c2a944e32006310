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
import asyncio
import gc
import statistics
import time
import zlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiokafka.structs import ConsumerRecord

from bench.data import dataset
from streams.runtime.batch_consumer import RawRecord
from streams.runtime.deadletters import DeadLetter, DeadLetterPipeline
from streams.runtime.gcpace import young_threshold
from streams.runtime.ingest import BatchIngest
from streams.runtime.state import LiveState
from streams.tools.replayer import read_lines

FETCH = 10_000


async def _publish(letters: Sequence[DeadLetter]) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--young", type=int, default=young_threshold(FETCH))
    args = parser.parse_args(argv)
    offsets = [0, 0, 0, 0]
    by_partition: list[list[Any]] = [[], [], [], []]
    for line in list(read_lines(dataset("xhs", 1, 200_000)))[: args.records]:
        partition = zlib.crc32(line[:40]) % 4
        offset = offsets[partition]
        by_partition[partition].append(
            ConsumerRecord(
                "t", partition, offset, 1_000 + offset, 0, b"k", line, None, 1, len(line), ()
            )
        )
        offsets[partition] += 1
    # One fetch: up to FETCH records, a run of each partition's (aiokafka's `getmany` dict).
    fetches: list[list[list[Any]]] = []
    quarter = FETCH // 4
    for start in range(0, max(offsets), quarter):
        fetches.append([records[start : start + quarter] for records in by_partition])
    new_record = tuple.__new__
    gc.collect()
    gc.freeze()
    gc.set_threshold(args.young, 10, 10)
    print(f"bench.handoff: {sum(offsets):,} records, young threshold {args.young:,}", flush=True)

    async def handed() -> None:
        ingest = BatchIngest(LiveState(), DeadLetterPipeline(_publish))
        for fetch in fetches:
            batch: list[Any] = []
            for records in fetch:
                batch += records
            await ingest(batch, time.time())

    async def rebuilt() -> None:
        ingest = BatchIngest(LiveState(), DeadLetterPipeline(_publish))
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

    total = sum(offsets)

    def timed(run: Callable[[], Coroutine[Any, Any, None]]) -> float:
        gc.collect()
        began = time.process_time()
        asyncio.run(run())
        return (time.process_time() - began) / total * 1e6

    us: dict[str, list[float]] = {"rebuilt": [], "handed": []}
    for _ in range(args.rounds):
        for name, run in (
            ("rebuilt", rebuilt),
            ("handed", handed),
            ("handed", handed),
            ("rebuilt", rebuilt),
        ):
            us[name].append(timed(run))
            print(f"bench.handoff: {name} {us[name][-1]:.2f} us CPU per record", flush=True)
    medians = {name: statistics.median(values) for name, values in us.items()}
    print(
        f"bench.handoff: medians rebuilt {medians['rebuilt']:.2f}, handed {medians['handed']:.2f} "
        f"us per record (n={len(us['rebuilt'])} each): handed / rebuilt "
        f"{medians['handed'] / medians['rebuilt']:.3f}, "
        f"{medians['rebuilt'] - medians['handed']:.2f} us less a record"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
