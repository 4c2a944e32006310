"""The worker's ingest applying a fetch in slices (`streams.runtime.ingest.BatchIngest`, issue
18) against one `apply_batch` per fetch (the ingest before), CPU per record, in one process.

    .venv/bin/python -m bench.slices [--records 100000] [--rounds 3]

Records of the cached xhs stream (`bench.data`, 200,000 records, seed 1) over 4 partitions, in
fetches of 10,000; each round runs whole, sliced, sliced, whole (ABBA, so a drift in the
machine's load hits both alike), each on a fresh `LiveState`, timed with `time.process_time`.
"""

from __future__ import annotations

import argparse
import time

from bench.ingest_ab import FETCH, abba, medians_line, no_publish, xhs_records
from streams.runtime.batch_consumer import RawRecord
from streams.runtime.deadletters import DeadLetterPipeline
from streams.runtime.ingest import BatchIngest
from streams.runtime.state import LiveState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slices", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    records = [
        RawRecord("t", partition, offset, b"k", line, 0)
        for partition, offset, line in xhs_records(args.records)
    ]
    fetches = [records[i : i + FETCH] for i in range(0, len(records), FETCH)]

    async def sliced() -> None:
        ingest = BatchIngest(LiveState(), DeadLetterPipeline(no_publish))
        for fetch in fetches:
            await ingest(fetch, time.time())

    async def whole() -> None:
        state = LiveState()
        for fetch in fetches:
            state.apply_batch(fetch)
            now = time.time()
            state.lag.observe(now, [r.timestamp / 1000.0 for r in fetch if r.timestamp])
            state.worker_lag.observe_many(0.0, len(fetch))

    us = abba("bench.slices", ("whole", whole), ("sliced", sliced), len(records), args.rounds)
    print(medians_line("bench.slices", us)[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
