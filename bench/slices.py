"""The worker's ingest applying a fetch in slices (`streams.runtime.ingest.BatchIngest`, issue
18) against one `apply_batch` per fetch (the ingest before), CPU per record, in one process.

    .venv/bin/python -m bench.slices [--records 100000] [--rounds 3]

Records of the cached xhs stream (`bench.data`, 200,000 records, seed 1) over 4 partitions, in
fetches of 10,000; each round runs whole, sliced, sliced, whole (ABBA, so a drift in the
machine's load hits both alike), each on a fresh `LiveState`, timed with `time.process_time`.
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

from bench.data import dataset
from streams.runtime.batch_consumer import RawRecord
from streams.runtime.deadletters import DeadLetter, DeadLetterPipeline
from streams.runtime.ingest import BatchIngest
from streams.runtime.state import LiveState
from streams.tools.replayer import read_lines

FETCH = 10_000


async def _publish(letters: Sequence[DeadLetter]) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slices", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    offsets = [0, 0, 0, 0]
    records: list[RawRecord] = []
    for line in list(read_lines(dataset("xhs", 1, 200_000)))[: args.records]:
        partition = zlib.crc32(line[:40]) % 4
        records.append(RawRecord("t", partition, offsets[partition], b"k", line, 0))
        offsets[partition] += 1
    fetches = [records[i : i + FETCH] for i in range(0, len(records), FETCH)]

    async def sliced() -> None:
        ingest = BatchIngest(LiveState(), DeadLetterPipeline(_publish))
        for fetch in fetches:
            await ingest(fetch, time.time())

    async def whole() -> None:
        state = LiveState()
        for fetch in fetches:
            state.apply_batch(fetch)
            now = time.time()
            state.lag.observe(now, [r.timestamp / 1000.0 for r in fetch if r.timestamp])
            state.worker_lag.observe_many(0.0, len(fetch))

    def timed(run: Callable[[], Coroutine[Any, Any, None]]) -> float:
        gc.collect()
        began = time.process_time()
        asyncio.run(run())
        return (time.process_time() - began) / len(records) * 1e6

    us: dict[str, list[float]] = {"whole": [], "sliced": []}
    for _ in range(args.rounds):
        for name, run in (
            ("whole", whole),
            ("sliced", sliced),
            ("sliced", sliced),
            ("whole", whole),
        ):
            us[name].append(timed(run))
            print(f"bench.slices: {name} {us[name][-1]:.2f} us CPU per record", flush=True)
    medians = {name: statistics.median(values) for name, values in us.items()}
    print(
        f"bench.slices: medians whole {medians['whole']:.2f}, sliced {medians['sliced']:.2f} "
        f"us per record (n={len(us['whole'])} each): sliced / whole "
        f"{medians['sliced'] / medians['whole']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
